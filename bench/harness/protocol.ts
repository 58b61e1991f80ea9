// Messages between the bench runner and its server processes (Node's IPC channel of `fork`).

/** What a server process reports about itself: memory, event-loop delay (ms) and its scenario's counters. */
export interface ServerNumbers {
  /** Resident set size now, bytes. */
  rss: number;
  /** Highest RSS seen since the last reset (sampled every 25 ms), bytes. */
  peakRss: number;
  /** `perf_hooks.monitorEventLoopDelay` since the last reset, in ms beyond its 10 ms sampling interval. */
  eventLoopDelay: { p50: number; p99: number; max: number; mean: number };
  /** CPU time (user + system) the server used since the last reset, and the wall time since it, ms. */
  cpuMs: number;
  windowMs: number;
  counters: Record<string, number>;
  /**
   * Latency inside the server per status code, ms: from the app's first middleware to the response's `finish`
   * (excludes the network and the load generator's own delays, which the client-side numbers include).
   */
  latency: Record<string, { count: number; p50: number; p99: number; max: number }>;
  /** Values the scenario samples every {@link SERIES_INTERVAL_MS} since the last reset (an adaptive limit …). */
  series?: Record<string, number[]>;
}

export const SERIES_INTERVAL_MS = 100;

export type ParentMessage =
  { type: 'numbers'; id: number } | { type: 'reset'; id: number } | { type: 'stop' };

export type ChildMessage =
  | { type: 'ready'; port: number; packagePath: string | undefined }
  | { type: 'failed'; message: string }
  | { type: 'numbers'; id: number; numbers: ServerNumbers };
