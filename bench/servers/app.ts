// The one Express app every bench server is built on: each scenario file adds only its route handler. The parent
// (bench/run.ts) forks this process, reads the port from the `ready` message and asks for the server's own
// numbers (RSS, event-loop delay, counters) over the IPC channel, so nothing but the measured route is on HTTP.
import express, { type ErrorRequestHandler, type Express } from 'express';
import type { AddressInfo } from 'node:net';
import {
  createHistogram,
  monitorEventLoopDelay,
  performance,
  type RecordableHistogram,
} from 'node:perf_hooks';
import {
  SERIES_INTERVAL_MS,
  type ChildMessage,
  type ParentMessage,
  type ServerNumbers,
} from '../harness/protocol';
import { packagePath } from './package';

const counters: Record<string, number> = {};
const ELD_RESOLUTION_MS = 10;

/** Adds to a named counter the parent reads with the server's numbers (fallbacks served, queue peaks …). */
export function count(name: string, n = 1): void {
  counters[name] = (counters[name] ?? 0) + n;
}

export function peak(name: string, value: number): void {
  if (value > (counters[name] ?? 0)) counters[name] = value;
}

const sampled = new Map<string, { read: () => number; values: number[] }>();
let seriesStart = performance.now();

/**
 * Samples `read()` every 100 ms; the parent gets the values since the last reset with the server's numbers,
 * and their times (`elapsedMs`, since the reset: a busy event loop stretches the 100 ms).
 */
export function track(name: string, read: () => number): void {
  if (sampled.size === 0)
    sampled.set('elapsedMs', { read: () => performance.now() - seriesStart, values: [] });
  sampled.set(name, { read, values: [] });
}

/** Readers of whole records (a middleware's flattened `stats()`), whose keys may appear while the server runs. */
const recordReaders: { prefix: string; read: () => Record<string, number> }[] = [];
const recordSeries = new Set<{ read: () => number; values: number[] }>();

/**
 * Samples every numeric field `read()` returns, as series named `<prefix><key>`, every 100 ms. A key that shows up
 * later (a dependency's first task) is padded with NaN back to the start of the window, so every series stays
 * aligned with `elapsedMs`.
 */
export function trackRecord(prefix: string, read: () => Record<string, number>): void {
  if (sampled.size === 0)
    sampled.set('elapsedMs', { read: () => performance.now() - seriesStart, values: [] });
  recordReaders.push({ prefix, read });
}

function sampleRecords(): void {
  const length = sampled.get('elapsedMs')?.values.length ?? 0;
  // A key missing from this sample reads NaN, not its last value.
  for (const series of recordSeries) series.read = () => Number.NaN;
  for (const { prefix, read } of recordReaders) {
    let record: Record<string, number>;
    try {
      record = read();
    } catch {
      continue;
    }
    for (const [key, value] of Object.entries(record)) {
      const name = `${prefix}${key}`;
      let series = sampled.get(name);
      if (!series) {
        series = { read: () => Number.NaN, values: new Array<number>(length).fill(Number.NaN) };
        sampled.set(name, series);
        recordSeries.add(series);
      }
      series.read = () => value;
    }
  }
}

const seriesTimer = setInterval(() => {
  sampleRecords();
  for (const s of sampled.values()) s.values.push(s.read());
}, SERIES_INTERVAL_MS);
seriesTimer.unref();

/** The `--variant` argument, checked against the variants the scenario file serves. */
export function variantArg<V extends string>(known: readonly V[]): V {
  const at = process.argv.indexOf('--variant');
  const value = at === -1 ? undefined : process.argv[at + 1];
  if (!known.includes(value as V)) {
    throw new Error(`Expected --variant to be one of ${known.join(', ')}, got ${String(value)}`);
  }
  return value as V;
}

// The answer Express's default handler gives (status, `err.headers` such as Retry-After, no stack for 5xx),
// without its per-error `console.error`, which would measure the pipe to the parent instead of the server.
const errorHandler: ErrorRequestHandler = (err: unknown, _req, res, next) => {
  if (res.headersSent) return next(err);
  const e = (err ?? {}) as { status?: unknown; headers?: unknown; expose?: unknown; message?: unknown };
  const status = typeof e.status === 'number' && e.status >= 400 && e.status < 600 ? e.status : 500;
  if (e.headers && typeof e.headers === 'object') res.set(e.headers as Record<string, string>);
  count(`status${status}`);
  res.status(status).json({ error: e.expose === true ? String(e.message) : `status ${status}` });
};

/**
 * Builds the app with `setup`, listens on 127.0.0.1 (a free port), reports `ready` to the parent and answers
 * its requests until told to stop. `onStop` closes what the scenario opened (the fan-out middleware, its pool).
 */
export function serve(setup: (app: Express) => void | Promise<void>, onStop?: () => Promise<void>): void {
  const send = (message: ChildMessage): void => {
    if (process.send) process.send(message);
  };
  const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
  eld.enable();
  let peakRss = process.memoryUsage.rss();
  let cpuAt = process.cpuUsage();
  let wallAt = performance.now();
  const sampler = setInterval(() => {
    const rss = process.memoryUsage.rss();
    if (rss > peakRss) peakRss = rss;
  }, 25);
  sampler.unref();

  // Histograms of integer microseconds, one per status code.
  const latency = new Map<number, RecordableHistogram>();
  const recordLatency = (status: number, ms: number): void => {
    let histogram = latency.get(status);
    if (!histogram) latency.set(status, (histogram = createHistogram()));
    histogram.record(Math.max(1, Math.round(ms * 1000)));
  };

  const numbers = (): ServerNumbers => {
    const rss = process.memoryUsage.rss();
    if (rss > peakRss) peakRss = rss;
    // The histogram records the interval between its samples, resolution included: the delay is what exceeds it.
    const ms = (ns: number): number => (Number.isFinite(ns) ? Math.max(0, ns / 1e6 - ELD_RESOLUTION_MS) : 0);
    return {
      rss,
      peakRss,
      eventLoopDelay: {
        p50: ms(eld.percentile(50)),
        p99: ms(eld.percentile(99)),
        max: ms(eld.max),
        mean: ms(eld.mean),
      },
      cpuMs: (() => {
        const used = process.cpuUsage(cpuAt);
        return (used.user + used.system) / 1000;
      })(),
      windowMs: performance.now() - wallAt,
      counters: { ...counters },
      latency: Object.fromEntries(
        [...latency].map(([status, h]) => [
          String(status),
          { count: h.count, p50: h.percentile(50) / 1000, p99: h.percentile(99) / 1000, max: h.max / 1000 },
        ]),
      ),
      ...(sampled.size
        ? { series: Object.fromEntries([...sampled].map(([name, s]) => [name, [...s.values]])) }
        : {}),
    };
  };

  const start = async (): Promise<void> => {
    const app = express();
    app.use((_req, res, next) => {
      const start = performance.now();
      res.once('finish', () => recordLatency(res.statusCode, performance.now() - start));
      next();
    });
    await setup(app);
    app.use(errorHandler);
    const server = app.listen(0, '127.0.0.1');
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    const stop = async (): Promise<void> => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await Promise.race([onStop?.(), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
      process.exit(0);
    };
    process.on('message', (raw: ParentMessage) => {
      switch (raw.type) {
        case 'reset':
          // The numbers of the window that ends, then a new window.
          send({ type: 'numbers', id: raw.id, numbers: numbers() });
          eld.reset();
          peakRss = process.memoryUsage.rss();
          cpuAt = process.cpuUsage();
          wallAt = performance.now();
          for (const key of Object.keys(counters)) delete counters[key];
          latency.clear();
          for (const s of sampled.values()) s.values.length = 0;
          seriesStart = performance.now();
          break;
        case 'numbers':
          send({ type: 'numbers', id: raw.id, numbers: numbers() });
          break;
        case 'stop':
          void stop();
          break;
      }
    });
    // The parent went away (killed, crashed): never outlive it.
    process.on('disconnect', () => process.exit(0));
    send({ type: 'ready', port: (server.address() as AddressInfo).port, packagePath: packagePath() });
  };

  start().catch((error: unknown) => {
    send({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
    process.exit(1);
  });
}
