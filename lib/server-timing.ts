import { performance } from 'node:perf_hooks';
import type { Scope } from './scope';
import type { TaskRun } from './task';

/** A header token (RFC 9110): task names made of these characters are written as they are. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NOT_TOKEN = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]/g;

/**
 * `file;dur=100.2, db;dur=201.3;desc="timeout", total;dur=301`: written just before the headers go out.
 * Runs on every response of a request that fanned out, so it is one loop and string concatenation: no
 * closures, no `toFixed`, and a name is rewritten only when it is not already a token.
 */
export function serverTimingOf(scope: Scope): string {
  const now = performance.now();
  const tasks = scope.tasks;
  let out = '';
  for (let i = 0; i < tasks.length; i++) {
    const task = tasks[i]!;
    const name = task.name;
    const end = task.state === 'settled' ? task.settledAt : now;
    out += `${TOKEN.test(name) ? name : name.replace(NOT_TOKEN, '_') || '_'};dur=${tenths(end - task.submittedAt)}`;
    const desc = describeOutcome(task);
    if (desc !== undefined) out += `;desc="${desc}"`;
    out += ', ';
  }
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
