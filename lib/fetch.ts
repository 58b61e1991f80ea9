import { FanoutError, isInstance } from './errors';

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

/**
 * Calls `fetch(url, init)` with `signal` (combined with `init.signal` when there is one) and `budget` merged
 * into the headers (the budget header wins over one in `init`). Resolves with the `Response` below 500 and for
 * a 499 rejects; rejects with a {@link DownstreamError} for a 5xx, after cancelling its body.
 */
export async function fetchWithin(
  task: string | undefined,
  url: string | URL,
  init: RequestInit | undefined,
  signal: AbortSignal,
  budget: Record<string, string>,
): Promise<Response> {
  const headers = new Headers(init?.headers);
  for (const [name, value] of Object.entries(budget)) headers.set(name, value);
  const own = init?.signal;
  const response = await fetch(url, {
    ...init,
    headers,
    signal: own ? both(signal, own) : signal,
  });
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

/** A signal aborted when either is (`AbortSignal.any` from Node 20.3; a listener pair before it). */
function both(a: AbortSignal, b: AbortSignal): AbortSignal {
  if (typeof AbortSignal.any === 'function') return AbortSignal.any([a, b]);
  const controller = new AbortController();
  const first = a.aborted ? a : b.aborted ? b : null;
  if (first) controller.abort(first.reason);
  else {
    const onA = (): void => controller.abort(a.reason);
    const onB = (): void => controller.abort(b.reason);
    a.addEventListener('abort', onA, { once: true });
    b.addEventListener('abort', onB, { once: true });
    controller.signal.addEventListener('abort', () => {
      a.removeEventListener('abort', onA);
      b.removeEventListener('abort', onB);
    });
  }
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
