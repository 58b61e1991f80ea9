/**
 * The learned transit per callee origin: how long a call to that origin spends outside the callee, there and
 * back. `ctx.fetch()` measures each call's round trip (from the call to the answer's headers) and the callee
 * says how long it worked (work-time-header.ts): round trip minus work is the transit of that hop. The budget
 * sent to the callee is cut by a high quantile of recent transits, so its deadline (counted from when it saw
 * the request, one way later) plus the way back ends before ours.
 *
 * Both numbers are durations measured on one host each (a round trip here, a work time there), never epoch
 * times: a clock skew between the hosts changes nothing.
 *
 * Like the other estimators, nothing here reads a clock or sets a timer: the caller passes `now`
 * (`performance.now()` ms), so it is deterministic under test.
 */

import type { TransitEstimate } from './types';
import { describe } from './validate';

/**
 * Transits kept per origin: the quantile reads the last 128. With the nearest-rank p99 below, fewer than 100
 * samples give their maximum, more skip the largest one (a retransmit, a paused process).
 */
export const WINDOW = 128;
/**
 * The quantile of recent transits taken as the learned margin. High on purpose: the margin costs only the
 * calls that run up to the callee's deadline (a few ms of their budget each), while a margin too small costs
 * the whole of such a call: the callee's answer reaches a caller that already gave up (issue 18: at 30 ms a
 * hop with a fixed 5 ms + 5 %, 0 of 3 answers arrived in time). A p90 would leave 1 slow call in 10 behind.
 */
export const QUANTILE = 0.99;
/** A transit older than this no longer counts (a route that changed, a connection re-made elsewhere). */
export const MAX_AGE_MS = 5 * 60_000;
/** How long a margin may stay above what its transits give now, before they are read again, ms. */
export const REFRESH_MS = 1000;
/** Origins remembered at most; the least recently used goes first. */
export const MAX_ORIGINS = 1000;

class Origin {
  readonly transits = new Float64Array(WINDOW);
  readonly at = new Float64Array(WINDOW);
  /** Transits written so far (the ring's next index is `written % WINDOW`). */
  written = 0;
  /** The quantile of the live samples, or `NaN` when it must be computed again. */
  cached = Number.NaN;
  /** When the oldest sample in the quantile leaves it, performance ms. */
  validUntil = 0;
  /** A new connection's set-up time, ms: the estimate before any answer; `NaN` when none. */
  connectMs = Number.NaN;
  connectAt = 0;
  /** The only sample is an origin's first answer, which the second replaces when lower. */
  provisional = false;
  /** Live samples: counted at each computation, and one more for each answer in between. */
  live = 0;
}

export class Transits {
  private readonly origins = new Map<string, Origin>();
  /** Origins whose last answer reported no work time (oldest first out): nothing to learn there. */
  private readonly silent = new Set<string>();

  constructor(
    private readonly maxOrigins = MAX_ORIGINS,
    private readonly maxAgeMs = MAX_AGE_MS,
  ) {}

  /** Origins remembered now (stale ones included until read). */
  get size(): number {
    return this.origins.size;
  }

  /**
   * One answer of `origin`: its round trip as the caller measured it and the work time the callee reported,
   * at `now`. A callee that reported nothing teaches nothing (`workMs` undefined): its round trip is mostly
   * its work, and taking it for a transit would cut every later call's budget by the callee's latency.
   */
  answered(origin: string, roundTripMs: number, workMs: number | undefined, now: number): void {
    if (workMs === undefined) return this.quiet(origin);
    if (!(roundTripMs >= 0) || !(workMs >= 0)) return;
    this.silent.delete(origin);
    // The work time is a whole ms rounded down, the round trip is not: a transit is never below 0.
    const transit = Math.max(0, roundTripMs - workMs);
    const entry = this.touch(origin);
    // The first answer of an origin usually came on a new connection (its set-up inside the round trip) and,
    // in a new process, after loading the HTTP client: it stands only until a lower second one replaces it.
    const replace = entry.written === 1 && entry.provisional && transit < entry.transits[0]!;
    entry.provisional = entry.written === 0;
    const i = replace ? 0 : entry.written++ % WINDOW;
    entry.transits[i] = transit;
    entry.at[i] = now;
    // A transit above the margin raises it at once (the safe side); one at or below it can only lower it, which
    // waits for the next refresh: no sort of the window on every call of a busy origin.
    if (replace || !(transit <= entry.cached) || entry.live === 0) entry.cached = Number.NaN;
    else {
      if (entry.validUntil > now + REFRESH_MS) entry.validUntil = now + REFRESH_MS;
      if (entry.live < WINDOW) entry.live++;
    }
  }

  /**
   * Whether nothing is known of `origin` yet, and it is not known to be silent: a call to it may watch its
   * connection's set-up for a first estimate.
   */
  unknown(origin: string): boolean {
    return !this.origins.has(origin) && !this.silent.has(origin);
  }

  /**
   * The callee reported no work time: a connection's estimate of it goes (its margin is the fixed part only),
   * and its connections are no longer watched. Transits it reported before stay until they age out.
   */
  private quiet(origin: string): void {
    if (!this.silent.has(origin)) {
      if (this.silent.size >= this.maxOrigins) this.silent.delete(this.silent.values().next().value!);
      this.silent.add(origin);
    }
    if (this.origins.get(origin)?.written === 0) this.origins.delete(origin);
  }

  /**
   * A new connection to `origin` took `ms` to set up (TCP, and TLS for https): a round trip per handshake, so a
   * first estimate of the transit until answers report one (more than one for TLS, on the safe side; about 0
   * to a local sidecar, no worse than nothing). Never overrides answers.
   */
  connected(origin: string, ms: number, now: number): void {
    if (!(ms >= 0)) return;
    const entry = this.touch(origin);
    entry.connectMs = ms;
    entry.connectAt = now;
    entry.cached = Number.NaN;
  }

  /** The learned margin for calls to `origin`, ms: 0 when nothing recent is known. */
  marginMs(origin: string, now: number): number {
    const entry = this.origins.get(origin);
    if (entry === undefined) return 0;
    const margin = this.estimate(entry, now);
    if (margin !== margin) {
      this.origins.delete(origin);
      return 0;
    }
    // Recently used: moves to the back of the eviction order.
    this.origins.delete(origin);
    this.origins.set(origin, entry);
    return margin;
  }

  /** Every origin's current estimate (stale ones dropped), as own keys of a plain object. */
  snapshot(now: number): Record<string, TransitEstimate> {
    const out: Record<string, TransitEstimate> = Object.create(null) as Record<string, TransitEstimate>;
    for (const [origin, entry] of [...this.origins]) {
      const margin = this.estimate(entry, now);
      if (margin !== margin) this.origins.delete(origin);
      else out[origin] = { marginMs: Math.ceil(margin), samples: entry.live };
    }
    return out;
  }

  private touch(origin: string): Origin {
    let entry = this.origins.get(origin);
    if (entry !== undefined) this.origins.delete(origin);
    else {
      if (this.origins.size >= this.maxOrigins) this.origins.delete(this.origins.keys().next().value!);
      entry = new Origin();
    }
    this.origins.set(origin, entry);
    return entry;
  }

  /** The quantile of the live transits; else the connection estimate while fresh; else `NaN` (stale). */
  private estimate(entry: Origin, now: number): number {
    if (entry.cached === entry.cached && now < entry.validUntil) return entry.cached;
    const oldest = now - this.maxAgeMs;
    const n = Math.min(entry.written, WINDOW);
    const live: number[] = [];
    let leaves = Number.POSITIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const at = entry.at[i]!;
      if (at < oldest) continue;
      live.push(entry.transits[i]!);
      if (at < leaves) leaves = at;
    }
    entry.live = live.length;
    if (live.length > 0) {
      live.sort((a, b) => a - b);
      // Nearest rank: the smallest value with at least QUANTILE of the samples at or below it.
      entry.cached = live[Math.ceil(QUANTILE * live.length) - 1]!;
      entry.validUntil = leaves + this.maxAgeMs;
    } else if (entry.connectMs === entry.connectMs && entry.connectAt >= oldest) {
      entry.cached = entry.connectMs;
      entry.validUntil = entry.connectAt + this.maxAgeMs;
    } else entry.cached = Number.NaN;
    return entry.cached;
  }
}

/**
 * The origin of the `url` given to `headers(url)` (`ctx.headers` or `req.fanout.headers`); undefined without
 * one. Anything else than an absolute URL or an origin is a `TypeError`: a typo would silently lose the margin.
 */
export function originArgument(url: unknown): string | undefined {
  if (url === undefined) return undefined;
  const origin = typeof url === 'string' || url instanceof URL ? originOf(url) : undefined;
  if (origin === undefined) {
    throw new TypeError(
      `Expected the url of \`headers(url)\` to be an absolute http(s) URL or origin, got ${describe(url)}`,
    );
  }
  return origin;
}

/** The origin of a URL given to `ctx.fetch()` (`http://host:port`); undefined for one fetch will refuse anyway. */
export function originOf(url: string | URL): string | undefined {
  try {
    const origin = (typeof url === 'string' ? new URL(url) : url).origin;
    return origin === 'null' ? undefined : origin;
  } catch {
    return undefined;
  }
}
