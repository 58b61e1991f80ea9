// Drives a server with autocannon's programmatic API and keeps every response's status and latency, so the
// percentiles are exact (p99.9 and max included) and can be split by status (successes versus 503s).
import autocannon from 'autocannon';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

export interface LoadOptions {
  /** Path on the server, e.g. `/`. */
  path: string;
  connections: number;
  /** Seconds; ignored when `amount` is set. */
  durationS?: number;
  /** Total requests to send (then stop), across the connections. */
  amount?: number;
  /** Requests per second offered, across all connections (autocannon's `overallRate`). */
  rate?: number;
  /**
   * Split the load over this many autocannon instances, started evenly over `spreadMs`. autocannon opens all
   * connections in the same tick, and paces a rate in one-second windows that all open together: against
   * dependencies of constant latency its connections then stay in lockstep, and the server gets every request
   * at once, each cycle. Independent clients do not; staggered instances do not either.
   */
  instances?: number;
  /** Over how long the instances start. @default 1000 */
  spreadMs?: number;
  /** Called about once a second with the responses so far. */
  onTick?: (responses: number, elapsedS: number) => void;
}

export interface Percentiles {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface LoadResult {
  connections: number;
  durationS: number;
  responses: number;
  ok: number;
  non2xx: number;
  /** Connection errors and timeouts (autocannon's `errors`, which include `timeouts`). */
  errors: number;
  timeouts: number;
  /**
   * Responses per second. Closed loop (no `rate`): from each connection's busy time (see `throughput`). With a
   * `rate`: responses over the whole run, first request to last response.
   */
  rps: number;
  /** 2xx responses per second. */
  okRps: number;
  /** Every response's latency, ms. */
  latency: Percentiles;
  /** Latency of 2xx responses. */
  okLatency: Percentiles;
  /** Latency per status code. */
  byStatus: Record<string, Percentiles>;
  /** CPU time the load generator (this process) used during the run, ms. */
  generatorCpuMs: number;
  /**
   * The load generator's own event-loop delay during the run, ms: latency it measures includes it, so a high
   * value says the client, not the server, added the time.
   */
  generatorEventLoopDelay: { p99: number; max: number };
}

export function percentiles(values: number[]): Percentiles {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  if (n === 0) return { count: 0, p50: NaN, p99: NaN, p999: NaN, max: NaN, mean: NaN };
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  const at = (q: number): number => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!;
  let sum = 0;
  for (const v of sorted) sum += v;
  return { count: n, p50: at(0.5), p99: at(0.99), p999: at(0.999), max: sorted[n - 1]!, mean: sum / n };
}

interface ClientTrack {
  n: number;
  okN: number;
  firstStart: number;
  lastEnd: number;
}

/**
 * Throughput without the ramp-up and cut-off bias of `count / duration` (which matters when a request takes
 * 300 ms of a 10 s run): each connection is busy from its first request's start to its last response, and its
 * rate is the responses it got in that time; the server's rate is the sum over connections.
 */
function throughput(clients: Iterable<ClientTrack>): { rps: number; okRps: number } {
  let rps = 0;
  let okRps = 0;
  for (const c of clients) {
    const busyS = (c.lastEnd - c.firstStart) / 1000;
    if (busyS <= 0) continue;
    rps += c.n / busyS;
    okRps += c.okN / busyS;
  }
  return { rps, okRps };
}

function runOne(
  url: string,
  options: LoadOptions,
  connections: number,
  share: { amount?: number; rate?: number },
  record: (client: object, status: number, ms: number) => void,
): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    const durationS = options.durationS ?? 10;
    const instance = autocannon(
      {
        url,
        connections,
        duration: durationS,
        ...(share.amount !== undefined ? { amount: share.amount } : {}),
        ...(share.rate !== undefined ? { overallRate: share.rate } : {}),
        timeout: 10,
      },
      (error, result) => {
        clearTimeout(guard);
        if (error) reject(error instanceof Error ? error : new Error(String(error)));
        else resolve(result);
      },
    );
    instance.on('response', (client, statusCode, _bytes, responseTime) =>
      record(client, statusCode, responseTime),
    );
    // Bounded whatever the server does: a run with `amount` whose server stops answering still ends.
    const guard = setTimeout(
      () => instance.stop(),
      (share.amount !== undefined ? 120 : durationS + 15) * 1000,
    );
  });
}

export async function runLoad(origin: string, options: LoadOptions): Promise<LoadResult> {
  const url = `${origin}${options.path}`;
  const instances = Math.max(1, Math.min(options.instances ?? 1, options.connections));
  const all: number[] = [];
  const ok: number[] = [];
  const byStatus = new Map<number, number[]>();
  const clients = new Map<object, ClientTrack>();
  const begin = performance.now();
  const cpuAt = process.cpuUsage();
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  let lastEnd = begin;

  const record = (client: object, status: number, ms: number): void => {
    const now = performance.now();
    all.push(ms);
    const is2xx = status >= 200 && status < 300;
    if (is2xx) ok.push(ms);
    let list = byStatus.get(status);
    if (!list) byStatus.set(status, (list = []));
    list.push(ms);
    let track = clients.get(client);
    if (!track) clients.set(client, (track = { n: 0, okN: 0, firstStart: now - ms, lastEnd: now }));
    track.n++;
    if (is2xx) track.okN++;
    track.lastEnd = now;
    lastEnd = now;
  };

  const ticker = setInterval(() => options.onTick?.(all.length, (performance.now() - begin) / 1000), 1000);
  try {
    const split = (total: number | undefined, i: number): number | undefined =>
      total === undefined ? undefined : Math.floor(total / instances) + (i < total % instances ? 1 : 0);
    const runs: Promise<autocannon.Result>[] = [];
    for (let i = 0; i < instances; i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, (options.spreadMs ?? 1000) / instances));
      runs.push(
        runOne(
          url,
          options,
          split(options.connections, i)!,
          { amount: split(options.amount, i), rate: split(options.rate, i) },
          record,
        ),
      );
    }
    const results = await Promise.all(runs);
    const used = process.cpuUsage(cpuAt);
    const spanS = (lastEnd - begin) / 1000;
    const { rps, okRps } =
      options.rate === undefined
        ? throughput(clients.values())
        : { rps: spanS > 0 ? all.length / spanS : 0, okRps: spanS > 0 ? ok.length / spanS : 0 };
    const sum = (pick: (r: autocannon.Result) => number): number => results.reduce((s, r) => s + pick(r), 0);
    return {
      connections: options.connections,
      durationS: (performance.now() - begin) / 1000,
      responses: all.length,
      ok: ok.length,
      non2xx: all.length - ok.length,
      errors: sum((r) => r.errors),
      timeouts: sum((r) => r.timeouts),
      rps,
      okRps,
      latency: percentiles(all),
      okLatency: percentiles(ok),
      byStatus: Object.fromEntries(
        [...byStatus].map(([status, list]) => [String(status), percentiles(list)]),
      ),
      generatorCpuMs: (used.user + used.system) / 1000,
      generatorEventLoopDelay: {
        p99: Math.max(0, eld.percentile(99) / 1e6 - 10),
        max: Math.max(0, eld.max / 1e6 - 10),
      },
    };
  } finally {
    clearInterval(ticker);
    eld.disable();
  }
}
