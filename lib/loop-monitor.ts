import { performance } from 'node:perf_hooks';
// The module's own functions, not the globals: the sampler measures the real loop whatever a test fakes or
// wraps (fake timers, leak trackers), and it is process-wide, not a request's timer.
import { clearTimeout as clearTimer, setTimeout as setTimer } from 'node:timers';

/**
 * What the overload controls read of the event loop: how late it runs callbacks (its own queueing delay) and
 * how busy it is. One monitor per process, shared by every middleware (see {@link acquireLoopMonitor}).
 */
export interface LoopMonitor {
  /**
   * Cumulative loop delay observed since the monitor started, ms (monotone; it counts the delay of a stall
   * still in progress too). A task's latency sample minus the growth of this over its lifetime is the part
   * the dependency took, when the loop stalled during it; a loop that stays saturated makes every tick late,
   * and the growth then sums them all while the reply waited for about one: bound it by
   * {@link recentDelayMs} (as the scheduler does). `now` (performance ms) saves a clock read.
   */
  delayTotalMs(now?: number): number;
  /** The loop's recent queueing delay, ms (a smoothed lag over the last ~100 ms, or a stall in progress). */
  recentDelayMs(now?: number): number;
  /** Event-loop utilisation over the last ~100 ms (0..1). */
  utilization(): number;
}

/** A {@link LoopMonitor} taken with {@link acquireLoopMonitor}; `release()` once, when its user closes. */
export interface LoopMonitorLease extends LoopMonitor {
  release(): void;
}

/** What the sampler needs from its surroundings: injected in tests so they run on a fake clock. */
export interface LoopClock {
  /** performance ms. */
  now(): number;
  /** Calls `fn` once after `ms`; the handle cancels it. Background work: the timer must not keep the process alive. */
  schedule(fn: () => void, ms: number): unknown;
  cancel(handle: unknown): void;
  /** Cumulative busy and idle time of the loop, ms (`performance.eventLoopUtilization()`); absent: utilisation 0. */
  elu?(): { active: number; idle: number };
}

/** How often the lag sampler runs, ms. */
export const SAMPLE_INTERVAL_MS = 10;
/**
 * Lateness a healthy loop shows anyway, ms: libuv's timers have 1 ms resolution and fire up to ~1 ms late with
 * nothing else to do. Not counted as delay, or an idle loop would seem to add ~10 % to every latency sample.
 */
export const TIMER_SLACK_MS = 1;
/** Time constant of the smoothed recent delay, ms. */
const RECENT_TAU_MS = 100;
/** Utilisation is measured over windows of this length, ms. */
const ELU_WINDOW_MS = 100;

const realClock: LoopClock = {
  now: () => performance.now(),
  schedule(fn, ms) {
    const timer = setTimer(fn, ms);
    timer.unref();
    return timer;
  },
  cancel: (handle) => clearTimer(handle as NodeJS.Timeout),
  elu: () => performance.eventLoopUtilization(),
};

/**
 * A lag sampler: a timer every {@link SAMPLE_INTERVAL_MS} notes how late it fired. A timer cannot fire before
 * the loop gets round to it, so its lateness is the delay every other callback due then (a socket read, a
 * downstream's reply) also suffered: the loop's own queueing delay, which a latency measured in JavaScript
 * includes and the dependency did not cause.
 */
export class SampledLoopMonitor implements LoopMonitor {
  private accrued = 0;
  private recent = 0;
  private util = 0;
  /** When the pending tick is due, performance ms; `NaN` while stopped. */
  private due = Number.NaN;
  private lastTick = 0;
  private handle: unknown = null;
  private eluAt = 0;
  private eluLast: { active: number; idle: number } | null = null;
  private readonly tickBound = (): void => this.tick();

  constructor(
    private readonly clock: LoopClock = realClock,
    private readonly intervalMs = SAMPLE_INTERVAL_MS,
  ) {}

  get running(): boolean {
    return this.handle !== null;
  }

  start(): void {
    if (this.handle !== null) return;
    const now = this.clock.now();
    this.lastTick = this.eluAt = now;
    this.eluLast = this.clock.elu?.() ?? null;
    this.arm(now);
  }

  /** Clears the timer; the totals stay (the delay total remains monotone across a restart). */
  stop(): void {
    if (this.handle === null) return;
    this.clock.cancel(this.handle);
    this.handle = null;
    this.due = Number.NaN;
  }

  delayTotalMs(now = this.clock.now()): number {
    return this.accrued + this.pending(now);
  }

  recentDelayMs(now = this.clock.now()): number {
    return Math.max(this.recent, this.pending(now));
  }

  utilization(): number {
    return this.util;
  }

  /** The lateness of the tick due now, not yet fired: a stall in progress. */
  private pending(now: number): number {
    const late = now - this.due - TIMER_SLACK_MS;
    return late > 0 ? late : 0; // NaN (stopped) compares false
  }

  private arm(now: number): void {
    this.due = now + this.intervalMs;
    this.handle = this.clock.schedule(this.tickBound, this.intervalMs);
  }

  private tick(): void {
    const now = this.clock.now();
    const late = this.pending(now);
    this.accrued += late;
    const alpha = 1 - Math.exp(-(now - this.lastTick) / RECENT_TAU_MS);
    this.recent += alpha * (late - this.recent);
    this.lastTick = now;
    if (now - this.eluAt >= ELU_WINDOW_MS && this.eluLast !== null) {
      const elu = this.clock.elu!();
      const active = elu.active - this.eluLast.active;
      const total = active + elu.idle - this.eluLast.idle;
      this.util = total > 0 ? Math.min(1, Math.max(0, active / total)) : this.util;
      this.eluLast = elu;
      this.eluAt = now;
    }
    this.arm(now);
  }
}

/** A monitor whose readings a test sets by hand. */
export class ManualLoopMonitor implements LoopMonitor {
  delayTotal = 0;
  recentDelay = 0;
  util = 0;

  delayTotalMs(): number {
    return this.delayTotal;
  }

  recentDelayMs(): number {
    return this.recentDelay;
  }

  utilization(): number {
    return this.util;
  }

  /** The loop stalls for `ms`: the total grows and the recent delay shows it. */
  stall(ms: number): void {
    this.delayTotal += ms;
    this.recentDelay = ms;
  }
}

let shared: SampledLoopMonitor | null = null;
let leases = 0;

/**
 * The process's loop monitor, started on first use. Each lease is released once (a middleware's `close()`);
 * when the last is, the timer is cleared. The timer is unref'd either way: it never keeps the process alive.
 */
export function acquireLoopMonitor(): LoopMonitorLease {
  const monitor = (shared ??= new SampledLoopMonitor());
  if (leases++ === 0) monitor.start();
  let released = false;
  return {
    delayTotalMs: (now?: number) => monitor.delayTotalMs(now),
    recentDelayMs: (now?: number) => monitor.recentDelayMs(now),
    utilization: () => monitor.utilization(),
    release(): void {
      if (released) return;
      released = true;
      if (--leases === 0) monitor.stop();
    },
  };
}

/** How many leases are out and whether the sampler's timer runs (tests and leak checks). */
export function loopMonitorState(): { leases: number; running: boolean } {
  return { leases, running: shared?.running ?? false };
}
