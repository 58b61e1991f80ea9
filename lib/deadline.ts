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

/** Something with a deadline in a {@link DeadlineQueue}: the links are kept on it, so adding allocates nothing. */
export interface Due {
  readonly deadlineAt: number;
  nextDue: Due | null;
  prevDue: Due | null;
  /** In a queue now. */
  queuedDue: boolean;
  /** Its deadline came: it has already left the queue. */
  expire(): void;
}

/**
 * One timer for many deadlines that come in the order they are added: the requests of one middleware, whose
 * deadlines are their arrival plus the same budget. A timer a request cost Node a `Timeout` object, a list
 * insert and, for the first unref'd one, a toggle of the loop's reference: a few µs a request on a loaded
 * server, for a timer that almost never fires. Here the timer is armed for the oldest deadline only, and left
 * armed when that entry leaves early while others are in (the usual case under load): when it fires, it
 * expires what is due and re-arms for the oldest entry left, about once a budget. It is cleared when the queue
 * empties. A deadline earlier than the last one added (a route's own budget, a budget header) is refused: its
 * owner arms a timer of its own.
 */
export class DeadlineQueue {
  private head: Due | null = null;
  private tail: Due | null = null;
  /** Armed while the queue holds an entry, for a time no later than the oldest one's deadline. */
  private timer: NodeJS.Timeout | null = null;

  /** Adds `due`, unless its deadline comes before the last one's (then the caller times it itself). */
  add(due: Due): boolean {
    const tail = this.tail;
    if (tail !== null && due.deadlineAt < tail.deadlineAt) return false;
    due.prevDue = tail;
    due.nextDue = null;
    if (tail !== null) tail.nextDue = due;
    else this.head = due;
    this.tail = due;
    due.queuedDue = true;
    // Only the first entry of an empty queue arms it: every later one is due no earlier (the check above).
    if (this.timer === null) this.arm(due.deadlineAt);
    return true;
  }

  /** Takes `due` out, if it is in (the timer stays armed while others are in: see the class). */
  remove(due: Due): void {
    if (!due.queuedDue) return;
    const { prevDue, nextDue } = due;
    if (prevDue !== null) prevDue.nextDue = nextDue;
    else this.head = nextDue;
    if (nextDue !== null) nextDue.prevDue = prevDue;
    else this.tail = prevDue;
    due.prevDue = due.nextDue = null;
    due.queuedDue = false;
    // Nothing left to time: no timer outlives the requests (under load the queue is seldom empty).
    if (this.head === null) this.timer = clear(this.timer);
  }

  /**
   * The timer fired: every entry due now (within the millisecond Node's timers round to) expires, oldest
   * first, and the timer is armed again for the oldest left.
   */
  fire(): void {
    this.timer = null;
    for (let due = this.head; due !== null; due = this.head) {
      if (due.deadlineAt - performance.now() >= 1) return this.arm(due.deadlineAt);
      this.remove(due);
      due.expire();
    }
  }

  /** Clears first: an entry's `expire()` may have added one, and armed it, during {@link fire}. */
  private arm(deadline: number): void {
    clear(this.timer);
    this.timer = timerAt(deadline, onDue, this);
  }
}

function onDue(queue: DeadlineQueue): void {
  queue.fire();
}
