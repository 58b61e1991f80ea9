/**
 * Reading the package's `Server-Timing` in tests of one's own routes (supertest, `fetch`, `http.get`): the
 * inverse of lib/observe/server-timing.ts, whose words it knows.
 */

/** How a task ended, as `Server-Timing` tells it. `'fulfilled'` is a plain success (no outcome in `desc`). */
export type ServerTimingOutcome =
  | 'fulfilled'
  | 'fallback'
  | 'fallback pending'
  | 'timeout'
  | 'failed'
  | 'shed'
  | 'skipped'
  | 'aborted'
  | 'queued'
  | 'running'
  | 'waiting';

/** One entry of the header, read. */
export interface ServerTimingEntry {
  /** `dur`: the task's whole time from submission to its final value, queue wait included, ms (0.1 ms steps). */
  ms: number;
  /**
   * The outcome: `'fulfilled'`, or the one `desc` names (`'fallback'` for a task answered by its fallback,
   * `'timeout'`, `'failed'`, `'shed'`, `'skipped'`, `'aborted'`; `'queued'`, `'running'` or `'waiting'` for a
   * task still unsettled when the headers went out). `total`, `more` and entries of other writers are
   * `'fulfilled'`.
   */
  outcome: ServerTimingOutcome;
  /** Time spent waiting for a slot or a worker thread, ms; 0 when under 1 ms (the header leaves it out). */
  queuedMs: number;
  /** Time an awaited fallback took, ms (`fallback 12.3 ms`); 0 for a plain value. */
  fallbackMs: number;
  /** When a dependent task (`after`) or a task of a later call was submitted, ms after the request's first task. */
  atMs: number | undefined;
  /** Extra attempts after a failed one (`retried 2`). */
  retried: number;
  /** Whether a hedge was started. */
  hedged: boolean;
  /** Whether it shared another request's execution (`key`). */
  coalesced: boolean;
  /** The raw `desc` (`'fallback; queued 3.1 ms'`), `''` when there is none. */
  desc: string;
}

/** Entries by name, in header order; see {@link parseServerTiming}. */
export type ServerTimings = Record<string, ServerTimingEntry>;

/** What {@link parseServerTiming} reads the header from. */
export type ServerTimingSource =
  | string
  | readonly string[]
  | undefined
  | null
  /** supertest's and `http.IncomingMessage`'s headers (lower-case names). */
  | { headers: Record<string, unknown> }
  /** A `fetch` `Response`. */
  | { headers: { get(name: string): string | null } };

const OUTCOMES: ReadonlySet<string> = new Set([
  'fallback',
  'fallback pending',
  'timeout',
  'failed',
  'shed',
  'skipped',
  'aborted',
  'queued',
  'running',
  'waiting',
]);

/**
 * Reads the `Server-Timing` header the middleware writes into `{ [task]: { ms, outcome, queuedMs, … } }`, for
 * assertions in a test of one's own routes:
 * ```ts
 * const res = await request(app).get('/').expect(200);
 * const timing = parseServerTiming(res);
 * expect(timing.api.outcome).toBe('fallback');
 * expect(timing.db.queuedMs).toBeLessThan(50);
 * expect(timing.total.ms).toBeLessThan(600);
 * ```
 * - The keys are the names as written: a name longer than 48 characters is cut, and characters outside an
 *   HTTP token (a space, `/`, `:` …) are each written `_` (`'user profile'` is `timing.user_profile`).
 * - `total` is the request's time from when the middleware saw it to the headers, one entry whatever the
 *   number of `fanout()` instances; `more` (`desc="12 more tasks"`) stands for the tasks beyond the header's
 *   cap (64 entries, 4 KB). A task named `total` or `more` is shadowed by them (the later entry wins).
 * - Entries the application wrote itself are read too, the same way.
 * - The header is written only with `serverTiming` on (the default unless `NODE_ENV=production`): without it
 *   the result is `{}`.
 * @param source the header's value (a string, or the array Node gives for a repeated header), or a response
 * whose `headers` hold it (supertest, `http.IncomingMessage`, `fetch`).
 */
export function parseServerTiming(source: ServerTimingSource): ServerTimings {
  const header = headerOf(source);
  const entries: [string, ServerTimingEntry][] = [];
  for (const raw of splitOutsideQuotes(header, ',')) {
    const [name = '', ...params] = splitOutsideQuotes(raw, ';');
    if (name === '') continue;
    let ms = 0;
    let desc = '';
    for (const param of params) {
      const eq = param.indexOf('=');
      const key = (eq === -1 ? param : param.slice(0, eq)).trim().toLowerCase();
      const value = eq === -1 ? '' : unquote(param.slice(eq + 1).trim());
      if (key === 'dur') ms = Number(value) || 0;
      else if (key === 'desc') desc = value;
    }
    entries.push([name, { ms, desc, ...readDesc(desc) }]);
  }
  // Built from entries: a name such as `__proto__` is an own key like any other.
  return Object.fromEntries(entries);
}

function headerOf(source: ServerTimingSource): string {
  if (source === undefined || source === null) return '';
  if (typeof source === 'string') return source;
  if (Array.isArray(source)) return source.join(', ');
  const headers = (source as { headers?: unknown }).headers;
  if (typeof headers !== 'object' || headers === null) return '';
  const get = (headers as { get?: unknown }).get;
  const value =
    typeof get === 'function'
      ? (get as (name: string) => unknown).call(headers, 'server-timing')
      : (headers as Record<string, unknown>)['server-timing'];
  if (Array.isArray(value)) return value.join(', ');
  return typeof value === 'string' ? value : '';
}

type DescFields = Omit<ServerTimingEntry, 'ms' | 'desc'>;

/** `fallback 12.3 ms; retried 2; queued 21.2 ms; at 201.5 ms`, read part by part. */
function readDesc(desc: string): DescFields {
  const fields: DescFields = {
    outcome: 'fulfilled',
    queuedMs: 0,
    fallbackMs: 0,
    atMs: undefined,
    retried: 0,
    hedged: false,
    coalesced: false,
  };
  if (desc === '') return fields;
  for (const part of desc.split(';')) {
    const word = part.trim();
    let match: RegExpExecArray | null;
    if (OUTCOMES.has(word)) fields.outcome = word as ServerTimingOutcome;
    else if ((match = /^fallback ([\d.]+) ms$/.exec(word))) {
      fields.outcome = 'fallback';
      fields.fallbackMs = Number(match[1]);
    } else if ((match = /^queued ([\d.]+) ms$/.exec(word))) fields.queuedMs = Number(match[1]);
    else if ((match = /^at ([\d.]+) ms$/.exec(word))) fields.atMs = Number(match[1]);
    else if ((match = /^retried (\d+)$/.exec(word))) fields.retried = Number(match[1]);
    else if (word === 'hedged') fields.hedged = true;
    else if (word === 'coalesced') fields.coalesced = true;
  }
  return fields;
}

/** Splits on `separator` where it is not inside a quoted string; trims each part. */
function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (c === separator && !quoted) {
      parts.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(text.slice(start).trim());
  return parts.filter((part) => part !== '');
}

/** A quoted-string's content (RFC 9110: `\` escapes the next character), or a token as it is. */
function unquote(value: string): string {
  if (value.length < 2 || !value.startsWith('"') || !value.endsWith('"')) return value;
  return value.slice(1, -1).replace(/\\(.)/g, '$1');
}
