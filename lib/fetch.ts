import { performance } from 'node:perf_hooks';
import { FanoutError, isInstance } from './errors';
import { watchConnections } from './connect-timing';
import { originOf, type Transits } from './transit';
import { reportedWorkMs } from './work-time-header';

/**
 * `ctx.fetch()`: the global `fetch` for a call to another service, with the attempt's signal and the budget
 * header, and the callee's answer mapped onto the package's outcomes so that statuses survive a hop: a
 * callee's 504 stays a timeout (504 here too), its 503 a shed (503, its `Retry-After` kept), and neither
 * becomes a 502.
 */

/** How a callee's answer counts for the task that called it. */
export type DownstreamOutcome = 'timeout' | 'shed' | 'rejected';

/**
 * A service called through `ctx.fetch()` answered with a 5xx. `downstreamStatus` is its status, `status`
 * ours: 504 for its 504 (a timeout: the task's status is `timeout`), 503 for its 503 (a shed, with its
 * `Retry-After`), 502 for anything else (a failure). The response body is not read.
 */
export class DownstreamError extends FanoutError {
  /** The callee's status. */
  readonly downstreamStatus: number;
  /** What the task's status becomes: `timeout` (504), `shed` (503) or `rejected`. */
  readonly outcome: DownstreamOutcome;
  /** Whether a retry may help, when the task's `retries` has no `retryOn` (a 499 never does). */
  readonly retryable: boolean;
  /** The callee's `Retry-After` in ms (503): no retry starts before it. 0 when it gave none. */
  readonly retryAfterMs: number;
  /** The URL called, without its query string (which may hold secrets). */
  readonly url: string;

  constructor(task: string | undefined, url: string, downstreamStatus: number, retryAfterMs = 0) {
    const outcome: DownstreamOutcome =
      downstreamStatus === 504 ? 'timeout' : downstreamStatus === 503 ? 'shed' : 'rejected';
    const status = outcome === 'timeout' ? 504 : outcome === 'shed' ? 503 : 502;
    const what = task === undefined ? 'A downstream call' : `Task \`${task}\``;
    super(
      `${what}: ${url} answered ${downstreamStatus}`,
      status,
      task === undefined ? [] : [task],
      outcome === 'shed'
        ? { headers: { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) } }
        : undefined,
    );
    this.downstreamStatus = downstreamStatus;
    this.outcome = outcome;
    this.retryable = downstreamStatus !== 499;
    this.retryAfterMs = retryAfterMs;
    this.url = url;
  }
}

/** What a task's retry policy reads of a failed attempt's error: whether to retry by default, and not before when. */
export function retryHint(error: unknown): { retryable: boolean; afterMs: number } | undefined {
  if (!isInstance(error, DownstreamError)) return undefined;
  return { retryable: error.retryable, afterMs: error.retryAfterMs };
}

/** The outcome of an attempt that rejected with `error`, when it is a mapped downstream answer. */
export function downstreamOutcome(error: unknown): DownstreamOutcome | undefined {
  return isInstance(error, DownstreamError) ? error.outcome : undefined;
}

/** What `ctx.fetch()` needs of its attempt (attempt.ts passes it; nothing here imports the attempt). */
export interface FetchHost {
  /** The attempt's signal: aborting it aborts the call and its body. */
  readonly signal: AbortSignal;
  /** The budget header for a call to `origin` (the learned transit taken off when the origin is known). */
  budget(origin: string | undefined): Record<string, string>;
  /** Where round trips and reported work times are learned. */
  readonly transits: Transits;
  /** Runs `dispose` once when the attempt ends; false when it has ended already. */
  atEnd(dispose: () => void): boolean;
}

/**
 * Calls `fetch(url, init)` with the attempt's signal (combined with `init.signal` when there is one) and the
 * budget header merged into the headers (it wins over one in `init`). Learns the transit to the URL's origin
 * from the answer (its round trip minus the work time it reports, transit.ts), 5xx answers included: a
 * callee's 504 is exactly the answer that must arrive in time. Resolves with the `Response` below 500 and for
 * a 499 rejects; rejects with a {@link DownstreamError} for a 5xx, after cancelling its body.
 */
export async function fetchWithin(
  task: string | undefined,
  url: string | URL,
  init: RequestInit | undefined,
  host: FetchHost,
): Promise<Response> {
  const origin = originOf(url);
  const headers = new Headers(init?.headers);
  for (const [name, value] of Object.entries(host.budget(origin))) headers.set(name, value);
  const own = init?.signal;
  const transits = host.transits;
  // Nothing known of the callee yet: its connection's set-up is a first estimate for the calls made meanwhile.
  const stop =
    origin !== undefined && transits.unknown(origin)
      ? watchConnections(origin, (ms) => transits.connected(origin, ms, performance.now()))
      : null;
  let response: Response;
  try {
    const pending = fetch(url, { ...init, headers, signal: own ? link(host, own) : host.signal });
    // Counted from here: the call's synchronous part (the first of a process loads undici, tens of ms) is the
    // caller's own time, not the hop's; the request goes out after it.
    const sentAt = performance.now();
    response = await pending;
    if (origin !== undefined) {
      const now = performance.now();
      transits.answered(origin, now - sentAt, reportedWorkMs(response.headers), now);
    }
  } finally {
    stop?.();
  }
  const status = response.status;
  if (status < 500 && status !== 499) return response;
  // Nobody reads the body of an error answer: let the connection go back to the pool.
  response.body?.cancel().catch(() => {});
  throw new DownstreamError(
    task,
    shown(url),
    status,
    parseRetryAfter(response.headers.get('retry-after'), Date.now()),
  );
}

/**
 * A signal aborted when the attempt's or the caller's own `signal` is, with no listener left on either once
 * the attempt ends. Not `AbortSignal.any`: on Node 20 each combined signal stays registered on its sources
 * (a caller's long-lived signal, such as a shutdown signal, gathered one per call). Until the attempt ends the
 * link holds, so a body read after the response still stops when either signal aborts; after it, the body of
 * a `Response` the task handed on stays readable and the caller's signal no longer reaches it.
 */
function link(host: FetchHost, own: AbortSignal): AbortSignal {
  const attempt = host.signal;
  const first = attempt.aborted ? attempt : own.aborted ? own : null;
  if (first) return AbortSignal.abort(first.reason);
  const controller = new AbortController();
  const onAttempt = (): void => controller.abort(attempt.reason);
  const onOwn = (): void => controller.abort(own.reason);
  const dispose = (): void => {
    attempt.removeEventListener('abort', onAttempt);
    own.removeEventListener('abort', onOwn);
    controller.signal.removeEventListener('abort', dispose);
  };
  // A call made after its attempt settled (a promise the task left behind): that attempt's signal never
  // aborts any more, so the caller's own is all there is to combine.
  if (!host.atEnd(dispose)) return own;
  attempt.addEventListener('abort', onAttempt, { once: true });
  own.addEventListener('abort', onOwn, { once: true });
  controller.signal.addEventListener('abort', dispose, { once: true });
  return controller.signal;
}

/** `Retry-After` in ms: delay-seconds or an HTTP date; 0 when absent or malformed. */
export function parseRetryAfter(value: string | null, now: number): number {
  if (value === null) return 0;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? 0 : Math.max(0, at - now);
}

function shown(url: string | URL): string {
  try {
    const u = new URL(String(url));
    return `${u.origin}${u.pathname}`;
  } catch {
    return String(url).split('?')[0]!.slice(0, 200);
  }
}
