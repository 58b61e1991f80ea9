import type { TaskEvent } from '../types';

/** A task's outcome as a metric label or span attribute. */
export type Outcome = 'fulfilled' | 'fallback' | 'failed' | 'timeout' | 'shed' | 'skipped' | 'aborted';

/** The status, except that a value from `fallback` is `fallback` whatever went wrong, and `rejected` is `failed`. */
export function outcomeOf(event: TaskEvent): Outcome {
  if (event.fallback) return 'fallback';
  return event.status === 'rejected' ? 'failed' : event.status;
}
