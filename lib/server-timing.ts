import { performance } from 'node:perf_hooks';
import type { Scope } from './scope';
import type { TaskRun } from './task';

const NOT_TOKEN = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]/g;

/** `file;dur=100.2, db;dur=201.3;desc="timeout", total;dur=301.0`: written just before the headers go out. */
export function serverTimingOf(scope: Scope): string {
  const now = performance.now();
  const entries = scope.tasks.map((task) => {
    const end = task.state === 'settled' ? task.settledAt : now;
    const desc = describeOutcome(task);
    return `${task.name.replace(NOT_TOKEN, '_') || '_'};dur=${(end - task.submittedAt).toFixed(1)}${desc ? `;desc="${desc}"` : ''}`;
  });
  entries.push(`total;dur=${(now - scope.arrival).toFixed(1)}`);
  return entries.join(', ');
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
