import { performance } from 'node:perf_hooks';
import type { TaskRun } from './task';

/** What the header is made from: one request's tasks and its arrival (scope.ts has them). */
export interface TimedRequest {
  readonly tasks: readonly TaskRun[];
  /** When the middleware saw the request, performance ms. */
  readonly arrival: number;
}

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
 * `file;dur=100.2, db;dur=201.3;desc="timeout", total;dur=301`: written just before the headers go out, in
 * at most `maxBytes` (ASCII: names are rewritten as tokens). Runs on every response of a request that fanned
 * out, so it is one loop and string concatenation: no closures, no `toFixed`, and a name is rewritten only
 * when it is not already a short token.
 */
export function serverTimingOf(scope: TimedRequest, maxBytes = MAX_BYTES): string {
  const now = performance.now();
  const tasks = scope.tasks;
  const room = maxBytes - TAIL_BYTES;
  let out = '';
  let shown = 0;
  const most = tasks.length > MAX_ENTRIES ? MAX_ENTRIES - 1 : tasks.length;
  for (; shown < most; shown++) {
    const task = tasks[shown]!;
    const entry = entryOf(task, now);
    if (out.length + entry.length > room) break;
    out += entry;
  }
  if (shown < tasks.length) out += `more;desc="${tasks.length - shown} more tasks", `;
  return `${out}total;dur=${tenths(now - scope.arrival)}`;
}

function entryOf(task: TaskRun, now: number): string {
  let name = task.name;
  if (name.length > MAX_NAME) name = name.slice(0, MAX_NAME);
  if (!TOKEN.test(name)) name = name.replace(NOT_TOKEN, '_') || '_';
  const end = task.state === 'settled' && !task.fallbackPending ? task.settledAt + task.fallbackMs : now;
  const desc = describeOutcome(task);
  return desc === undefined
    ? `${name};dur=${tenths(end - task.submittedAt)}, `
    : `${name};dur=${tenths(end - task.submittedAt)};desc="${desc}", `;
}

/** Milliseconds to one decimal, as `Server-Timing` shows them (`12.3`, or `12` for a whole number). */
function tenths(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function describeOutcome(task: TaskRun): string | undefined {
  const outcome = outcomeOf(task);
  // The attempts, where there was more than one: `retried 2`, `hedged`; a shared execution: `coalesced`.
  if (task.attempts <= 1 && !task.coalesced) return outcome;
  let attempts = task.coalesced ? 'coalesced' : '';
  if (task.retried > 0) attempts = `retried ${task.retried}`;
  if (task.hedged > 0) attempts += attempts === '' ? 'hedged' : ', hedged';
  if (attempts === '') return outcome;
  return outcome === undefined ? attempts : `${outcome}, ${attempts}`;
}

function outcomeOf(task: TaskRun): string | undefined {
  if (task.state !== 'settled') return task.state;
  if (task.status === 'skipped') return 'skipped';
  if (task.fallbackPending) return 'fallback pending';
  if (task.usedFallback) return task.fallbackMs > 0 ? `fallback ${tenths(task.fallbackMs)} ms` : 'fallback';
  switch (task.status) {
    case 'fulfilled':
      return undefined;
    case 'rejected':
      return 'failed';
    default:
      return task.status;
  }
}
