import { performance } from 'node:perf_hooks';
import type { Scope } from './scope';
import type { TaskRun } from './task';

/** A header token (RFC 9110): task names made of these characters are written as they are. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NOT_TOKEN = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]/g;

/**
 * Entries at most, `total` aside: a handler that runs hundreds of tasks would otherwise send a header larger
 * than proxies accept (nginx's default buffer is 4-8 KB and it answers 502 beyond). The rest are counted in
 * one `more` entry.
 */
export const MAX_ENTRIES = 64;

/**
 * `file;dur=100.2, db;dur=201.3;desc="timeout", total;dur=301`: written just before the headers go out.
 * Runs on every response of a request that fanned out, so it is one loop and string concatenation: no
 * closures, no `toFixed`, and a name is rewritten only when it is not already a token.
 */
export function serverTimingOf(scope: Scope): string {
  const now = performance.now();
  const tasks = scope.tasks;
  let out = '';
  const shown = tasks.length > MAX_ENTRIES ? MAX_ENTRIES - 1 : tasks.length;
  for (let i = 0; i < shown; i++) {
    const task = tasks[i]!;
    const name = task.name;
    const end = task.state === 'settled' ? task.settledAt : now;
    out += `${TOKEN.test(name) ? name : name.replace(NOT_TOKEN, '_') || '_'};dur=${tenths(end - task.submittedAt)}`;
    const desc = describeOutcome(task);
    if (desc !== undefined) out += `;desc="${desc}"`;
    out += ', ';
  }
  if (shown < tasks.length) out += `more;desc="${tasks.length - shown} more tasks", `;
  return `${out}total;dur=${tenths(now - scope.arrival)}`;
}

/** Milliseconds to one decimal, as `Server-Timing` shows them (`12.3`, or `12` for a whole number). */
function tenths(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function describeOutcome(task: TaskRun): string | undefined {
  if (task.state !== 'settled') return task.state;
  if (task.usedFallback) return 'fallback';
  switch (task.status) {
    case 'fulfilled':
      return undefined;
    case 'rejected':
      return 'failed';
    default:
      return task.status;
  }
}
