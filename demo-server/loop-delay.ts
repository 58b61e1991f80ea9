// How late the demo's event loop runs, for `/stats`: a timer due every 10 ms records how late it fires.
//
// Not perf_hooks' monitorEventLoopDelay(): its reset() also forgets when its timer last ran, so the next run
// records nothing, and a block that starts within 10 ms of a read (the request right after a /stats, as in a
// test) goes unseen. Here the reference time survives the reset.
import { createHistogram, performance, type RecordableHistogram } from 'node:perf_hooks';

/** The sampling timer's period: a free loop runs it on time. */
const PERIOD_MS = 10;

/**
 * Event-loop delay over one window, in ms: how much later than due the loop ran the sampling timer. A block
 * of the loop is one sample however long it lasts, so percentiles understate it: `max` shows it.
 */
export interface LoopDelayWindow {
  p50: number;
  p99: number;
  max: number;
  /** The window: from the previous read (or the start) to this one. */
  windowMs: number;
}

export interface LoopDelay {
  /** The delays since the previous read, then starts a new window (reset on read). */
  read(): LoopDelayWindow;
  /** Stops sampling. */
  close(): void;
}

export function monitorLoopDelay(): LoopDelay {
  // Microseconds: a histogram records integers >= 1.
  const histogram: RecordableHistogram = createHistogram();
  let last = performance.now();
  let since = last;
  // setInterval sets each next run PERIOD_MS after the current one started: the time between runs, less the
  // period, is how late the run was.
  const timer = setInterval(() => {
    const now = performance.now();
    histogram.record(Math.max(1, Math.round((now - last - PERIOD_MS) * 1000)));
    last = now;
  }, PERIOD_MS);
  timer.unref();
  const ms = (us: number): number => Math.round(us / 100) / 10;
  return {
    read() {
      const now = performance.now();
      const empty = histogram.count === 0;
      const window: LoopDelayWindow = {
        p50: empty ? 0 : ms(histogram.percentile(50)),
        p99: empty ? 0 : ms(histogram.percentile(99)),
        max: empty ? 0 : ms(histogram.max),
        windowMs: Math.round(now - since),
      };
      histogram.reset();
      since = now;
      return window;
    },
    close() {
      clearInterval(timer);
    },
  };
}
