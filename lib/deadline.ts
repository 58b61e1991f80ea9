import { performance } from 'node:perf_hooks';

/**
 * Deadline arithmetic and the only deadline timers. Every deadline inside the package is a `performance.now()`
 * time (monotonic: an NTP step or a fake `Date` cannot move it); it meets the caller's clock only in
 * {@link epochOf}. Budgets expire through three timers, all made here: the request's (scope.ts), a call's
 * tighter `budgetMs` (call.ts) and a task's `timeoutMs` or `attemptTimeoutMs` (task.ts, attempt.ts). They are
 * `unref()`'d: a pending deadline never keeps the process alive.
 */

/** Calls `fn(arg)` in `ms` (at least 1 ms, as Node's timers do). */
export function timerIn<A>(ms: number, fn: (arg: A) => void, arg: A): NodeJS.Timeout {
  const timer = setTimeout(fn, ms, arg);
  timer.unref();
  return timer;
}

/**
 * Calls `fn(arg)` at `deadline`, rounded up to a whole ms: Node keeps one timer list per duration, so requests
 * with the same budget share one list (an O(1) append) instead of each adding a list to the timers' queue.
 */
export function timerAt<A>(deadline: number, fn: (arg: A) => void, arg: A): NodeJS.Timeout {
  return timerIn(Math.ceil(deadline - performance.now()), fn, arg);
}

/** Clears a timer that may be unset; returns `null` for the field that held it. */
export function clear(timer: NodeJS.Timeout | null): null {
  if (timer !== null) clearTimeout(timer);
  return null;
}

/** Milliseconds left until `deadline`, never negative. */
export function remaining(deadline: number): number {
  return Math.max(0, deadline - performance.now());
}

/** The deadline in epoch ms, in the caller's clock: `Date.now()` plus what is left, read now. */
export function epochOf(deadline: number): number {
  return Math.round(Date.now() + deadline - performance.now());
}

/** The deadline `ms` from `now`, unless `deadline` comes first. */
export function within(deadline: number, now: number, ms: number | undefined): number {
  return ms !== undefined && now + ms < deadline ? now + ms : deadline;
}
