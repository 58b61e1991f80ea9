import { performance } from 'node:perf_hooks';
import type { TaskRun } from '../task';

/** What the header is made from: one request's tasks and its arrival (scope.ts has them). */
export interface TimedRequest {
  readonly tasks: readonly TaskRun[];
  /** When the middleware saw the request, performance ms. */
  readonly arrival: number;
}

/** Which tasks get an entry (`serverTiming: { include }`); null: all. */
export type Include = ((name: string) => boolean) | null;

/** A header token (RFC 9110): task names made of these characters are written as they are. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NOT_TOKEN = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]/g;

/**
 * The header's size at most, in bytes, whatever the names: proxies refuse large response headers (nginx's
 * default buffer is 4-8 KB and it answers 502 beyond; Node's own client fails with `HPE_HEADER_OVERFLOW` at
 * 16 KB for all headers together). Entries that do not fit are counted in one `more` entry.
 */
export const MAX_BYTES = 4096;
/** Entries at most, `total` aside. */
export const MAX_ENTRIES = 64;
/** Characters of a task name shown; a longer one is cut. */
export const MAX_NAME = 48;
/** Room kept for `more;desc="12345 more tasks", total;dur=123456.7`. */
const TAIL_BYTES = 64;
/**
 * A queue wait shorter than this is left out of `desc`: a fraction of a millisecond says nothing about where
 * the budget went, and most tasks of an unloaded server have one.
 */
const MIN_QUEUED_MS = 1;
/**
 * A task that waited for a dependency, or belongs to a later call, says when it was submitted (`at 201.5 ms`,
 * counted from the request's first task): a waterfall needs it. The tasks of a call without dependencies are
 * all submitted at its start (one after another, each after the synchronous part of the one before): they
 * carry none.
 */
const MIN_AT_MS = 1;

/**
 * `file;dur=100.2, db;dur=201.3;desc="queued 21.2 ms", api;dur=150;desc="fallback; queued 3.1 ms; at 0.4 ms",
 * total;dur=301`. Each task's `dur` is its whole time from submission (queue wait included) to its final
 * value; `desc` lists, separated by `; `, what is not plain success: the outcome (`timeout`, `failed`,
 * `shed`, `skipped`, `aborted`, `fallback` or `fallback 12.3 ms` for an awaited one, `queued` or `running`
 * while unsettled), the attempts (`retried 2`, `hedged`, `coalesced`), the wait for a slot or a thread
 * (`queued 21.2 ms`, from 1 ms), and, for a dependent or a task of a later call, when it was submitted
 * after the request's first task (`at 201.5 ms`). Written just before the headers go out, in at most `maxBytes` (ASCII:
 * names are rewritten as tokens). Runs on every response of a request that fanned out, so it is one loop and
 * string concatenation: no closures, no `toFixed`, and a name is rewritten only when it is not already a
 * short token. One response has one `total` whatever the number of `fanout()` instances that saw it (an
 * inner one writes its entries without it); callers read `total` by that name: do not rename it.
 */
export function serverTimingOf(
  scope: TimedRequest,
  include: Include = null,
  maxBytes = MAX_BYTES,
  /** Whether to end with the `total` entry: an inner `fanout()` instance leaves it to the outer one. */
  withTotal = true,
): string {
  const now = performance.now();
  const tasks = scope.tasks;
  const room = maxBytes - TAIL_BYTES;
  const first = tasks.length > 0 ? tasks[0]! : null;
  let out = '';
  let shown = 0;
  let hidden = 0;
  let firstHidden = -1;
  for (let i = 0; i < tasks.length; i++) {
    const task = tasks[i]!;
    if (include !== null && !included(include, task.name)) continue;
    // One entry is kept for `more` (taken back below when only one task is left over).
    if (hidden === 0 && shown < MAX_ENTRIES - 1) {
      const entry = entryOf(task, first!, now);
      if (out.length + entry.length <= room) {
        out += entry;
        shown++;
        continue;
      }
    }
    if (hidden++ === 0) firstHidden = i;
  }
  if (hidden === 1 && shown === MAX_ENTRIES - 1) {
    const entry = entryOf(tasks[firstHidden]!, first!, now);
    if (out.length + entry.length <= room) {
      out += entry;
      hidden = 0;
    }
  }
  if (hidden > 0) out += `more;desc="${hidden} more tasks", `;
  return withTotal ? `${out}total;dur=${tenths(now - scope.arrival)}` : out.slice(0, -2);
}

function included(include: (name: string) => boolean, name: string): boolean {
  try {
    return include(name) === true;
  } catch {
    return false;
  }
}

function entryOf(task: TaskRun, first: TaskRun, now: number): string {
  let name = task.name;
  if (name.length > MAX_NAME) name = name.slice(0, MAX_NAME);
  if (!TOKEN.test(name)) name = name.replace(NOT_TOKEN, '_') || '_';
  const end = task.state === 'settled' && !task.fallbackPending ? task.settledAt + task.fallbackMs : now;
  let desc = describeOutcome(task);
  const queued = task.queuedMs;
  if (queued >= MIN_QUEUED_MS) desc = append(desc, `queued ${tenths(queued)} ms`);
  if (task.deps.length > 0 || task.host !== first.host) {
    const at = task.submittedAt - first.submittedAt;
    if (at >= MIN_AT_MS) desc = append(desc, `at ${tenths(at)} ms`);
  }
  return desc === ''
    ? `${name};dur=${tenths(end - task.submittedAt)}, `
    : `${name};dur=${tenths(end - task.submittedAt)};desc="${desc}", `;
}

function append(desc: string, part: string): string {
  return desc === '' ? part : `${desc}; ${part}`;
}

/** Milliseconds to one decimal, as `Server-Timing` shows them (`12.3`, or `12` for a whole number). */
function tenths(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** The outcome and the attempts, `; `-separated; '' for a plain success at the first attempt. */
function describeOutcome(task: TaskRun): string {
  const outcome = outcomeOf(task);
  if (task.attempts <= 1 && !task.coalesced) return outcome;
  let desc = task.coalesced ? append(outcome, 'coalesced') : outcome;
  if (task.retried > 0) desc = append(desc, `retried ${task.retried}`);
  if (task.hedged > 0) desc = append(desc, 'hedged');
  return desc;
}

function outcomeOf(task: TaskRun): string {
  if (task.state !== 'settled') return task.state;
  if (task.status === 'skipped') return 'skipped';
  if (task.fallbackPending) return 'fallback pending';
  if (task.usedFallback) return task.fallbackMs > 0 ? `fallback ${tenths(task.fallbackMs)} ms` : 'fallback';
  switch (task.status) {
    case 'fulfilled':
      return '';
    case 'rejected':
      return 'failed';
    default:
      return task.status ?? '';
  }
}
