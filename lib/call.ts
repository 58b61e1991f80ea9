import { performance } from 'node:perf_hooks';
import {
  BudgetExceededError,
  CallTooLargeError,
  ClientClosedError,
  FanoutError,
  isInstance,
  OverloadedError,
  quietly,
  quote,
  SiblingFailedError,
  TaskFailedError,
  WorkerArgumentsError,
  WorkerScriptError,
} from './errors';
import { clear, timerIn } from './deadline';
import type { TaskDef } from './task-def';
import type { Bulkhead } from './scheduler';
import { TaskRun, type RequestHost, type TaskHost } from './task';
import type { Settled, TaskStatus } from './types';

/** What a call needs from its request (scope.ts has it; passed down as this interface, never imported). */
export interface CallHost extends RequestHost {
  /** The request's deadline, performance ms. */
  readonly deadlineAt: number;
  /** The client left before the response. */
  readonly disconnected: boolean;
  untrack(call: Call): void;
}

export type Mode = 'all' | 'settle';

/** The turn of the last call admitted as a whole: it marks the bulkheads' tallies (see `Call.admitWhole`). */
let admissionTurn = 0;

/**
 * One `all()`, `settle()` or `run()` call: its tasks, their `after` wiring, its deadline and how it ends.
 * In `all` mode the first required failure aborts the siblings and rejects the call; in `settle` mode every
 * task runs to its own end.
 */
export class Call implements TaskHost {
  readonly tasks: TaskRun[];
  readonly deadline: number;
  /** The budget that bounds this call when it is tighter than the request's, for error messages. */
  readonly budgetMs: number | undefined;
  readonly promise: Promise<unknown>;
  private resolve!: (value: unknown) => void;
  private reject!: (error: unknown) => void;
  private remaining: number;
  private done = false;
  /** Set while many tasks are settled at once (deadline, disconnect, fail-fast), so each is not judged alone. */
  private bulk = false;
  /** Fallbacks being awaited, and whether the call is over but for them. */
  private pendingFallbacks = 0;
  private waiting = false;
  private timer: NodeJS.Timeout | null = null;
  /** An `all()` of several tasks: its plain tasks share one abort controller (task.ts `plain`). */
  readonly shares: boolean;
  private controller: AbortController | null = null;
  /** When it was made, performance ms (its tasks' first submissions follow at once: see `begin`). */
  private readonly madeAt: number;

  constructor(
    readonly scope: CallHost,
    defs: readonly TaskDef[],
    readonly mode: Mode,
    budgetMs: number | undefined,
  ) {
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    const now = (this.madeAt = performance.now());
    let deadline = scope.deadlineAt;
    if (budgetMs !== undefined && now + budgetMs < deadline) {
      deadline = now + budgetMs;
      this.budgetMs = budgetMs;
      this.timer = timerIn(budgetMs, onCallDeadline, this);
    }
    this.deadline = deadline;
    this.shares = mode === 'all' && defs.length > 1;
    const tasks = (this.tasks = new Array<TaskRun>(defs.length));
    for (let i = 0; i < defs.length; i++) tasks[i] = new TaskRun(this, defs[i]!, now);
    for (let i = 0; i < defs.length; i++) {
      const after = defs[i]!.after;
      if (after.length === 0) continue;
      // Lists only for tasks with `after` and the tasks they wait on: the others keep the shared empty ones.
      const task = tasks[i]!;
      const deps = new Array<TaskRun>(after.length);
      for (let j = 0; j < after.length; j++) {
        const dep = (deps[j] = tasks[after[j]!]!);
        if (dep.dependents.length === 0) dep.dependents = [task];
        else dep.dependents.push(task);
      }
      task.deps = deps;
      task.pendingDeps = deps.length;
    }
    this.remaining = tasks.length;
  }

  /** Submits the tasks that depend on nothing. Separate from the constructor so the call is tracked first. */
  begin(): void {
    if (this.remaining === 0) return this.finish();
    const tasks = this.tasks;
    if (this.mode === 'all' && tasks.length > 1 && this.admitWhole()) return;
    // The constructor's clock read, a moment ago: one read for all of them.
    const now = this.madeAt;
    for (const task of tasks) if (task.pendingDeps === 0) task.submit(now);
  }

  /**
   * Admission of an `all()` call as a whole, when the scheduler cannot take every task that is ready to run:
   * if its required tasks do not fit either, the call is shed before any task starts (the outcome fail-fast
   * would give after starting the first tasks and shedding a later one, without the wasted starts); if they
   * fit, they are submitted first and the optional tasks that find no room take their fallback. Returns
   * whether it submitted (or shed) the call; false when everything fits and submission is left to `begin()`.
   */
  private admitWhole(): boolean {
    const scope = this.scope;
    const { scheduler, closed } = scope.runtime;
    if (closed || scope.over) return false;
    const tasks = this.tasks;
    const lane = scope.lane;
    // A task that only calls a worker needs no IO slot: the worker pool admits it.
    let ready = 0;
    for (const task of tasks) if (task.pendingDeps === 0 && !task.slotless) ready++;
    if (ready === 0) return false;
    // The common case: in every dependency of a ready task nobody waits and there are slots for all of the
    // call's ready tasks. Nothing to decide, nothing listed.
    let startable = true;
    for (const task of tasks) {
      if (task.pendingDeps !== 0 || task.slotless) continue;
      if (scheduler.startable(lane, task.bulkhead) < ready) {
        startable = false;
        break;
      }
    }
    if (startable) return false;
    // Room per dependency (each has its own bulkhead): a saturated one must not shed a call for tasks that go
    // elsewhere. Each bulkhead's tally is marked with this turn, so a call of many dependencies stays O(tasks).
    const turn = ++admissionTurn;
    const now = this.madeAt;
    const groups: Bulkhead[] = [];
    let fits = true;
    let required = 0;
    for (const task of tasks) {
      if (task.pendingDeps !== 0 || task.slotless) continue;
      const bulkhead = task.bulkhead;
      const tally = bulkhead.tally;
      if (tally.turn !== turn) {
        tally.turn = turn;
        tally.room = scheduler.capacity(lane, this.deadline, bulkhead, now);
        tally.ready = 0;
        tally.required = 0;
        groups.push(bulkhead);
      }
      if (++tally.ready > tally.room) fits = false;
      if (!task.def.hasFallback) {
        tally.required++;
        required++;
      }
    }
    if (fits) return false;
    const isRequired = (task: TaskRun): boolean =>
      task.pendingDeps === 0 && !task.slotless && !task.def.hasFallback;
    const limit = Math.min(scheduler.perRequest, scheduler.concurrency) + scheduler.maxQueue;
    if (required > limit) {
      const detail = `perRequest ${scheduler.perRequest} + maxQueue ${scheduler.maxQueue}`;
      const error = new CallTooLargeError(
        tasks.filter(isRequired).map((task) => task.name),
        limit,
        detail,
      );
      this.settleAll(() => {
        for (const task of tasks) task.settle('rejected', error);
      });
      this.finish(error);
      return true;
    }
    let short: Bulkhead | undefined;
    for (const bulkhead of groups) {
      if (bulkhead.tally.required > bulkhead.tally.room) {
        short = bulkhead;
        break;
      }
    }
    if (short === undefined) {
      for (const task of tasks) if (isRequired(task)) task.submit(now);
      // Then the optional ones (those that find no room take their fallback) and those that need no IO slot.
      for (const task of tasks) if (task.pendingDeps === 0 && !isRequired(task)) task.submit(now);
      return true;
    }
    // The required tasks beyond their dependency's room, in the call's order.
    for (const bulkhead of groups) bulkhead.tally.skip = bulkhead.tally.room;
    const refused: string[] = [];
    for (const task of tasks) {
      if (!isRequired(task)) continue;
      const tally = task.bulkhead.tally;
      if (tally.required <= tally.room) continue;
      if (tally.skip > 0) tally.skip--;
      else refused.push(task.name);
    }
    const detail = `no room for the ${required} required tasks of the call ${scheduler.occupancy(short)}`;
    this.settleAll(() => {
      for (const task of tasks) {
        task.settle(
          'shed',
          quietly(() => new OverloadedError([task.name], detail)),
        );
      }
    });
    this.finish(quietly(() => new OverloadedError(refused, detail)));
    return true;
  }

  sharedController(): AbortController {
    return (this.controller ??= new AbortController());
  }

  /** A task's outcome is recorded; its fallback (if it needs one) may still have to be awaited. */
  onTaskSettled(task: TaskRun): void {
    if (task.status !== 'fulfilled' && task.def.hasFallback && this.useFallback(task)) return;
    this.taskDone(task);
  }

  /** The task's value (or failure) is final: count it, then start its dependents or fail the call. */
  private taskDone(task: TaskRun): void {
    this.remaining--;
    this.scope.runtime.count(task);
    if (this.bulk || this.done) return;
    if (task.status === 'fulfilled' || task.usedFallback) {
      // Indexed: a for-of over the shared empty list allocated an iterator for every task without dependents.
      const dependents = task.dependents;
      for (let i = 0; i < dependents.length; i++) {
        const dependent = dependents[i]!;
        if (--dependent.pendingDeps === 0) {
          dependent.results = valuesOf(dependent.deps);
          dependent.submit();
        }
      }
    } else if (this.mode === 'all') {
      return this.failFast(failureOf(task));
    } else {
      for (const dependent of task.dependents) {
        dependent.settle(
          'rejected',
          new TaskFailedError(
            dependent.name,
            task.error,
            `not run: its dependency ${quote(task.name)} failed`,
          ),
        );
      }
    }
    if (this.remaining === 0) this.finish();
  }

  /**
   * Takes the task's fallback. A value (or a function's result) that is a thenable is awaited until the call's
   * deadline plus `fallbackMs`: what is left of the budget, and the allowance on top (all a fallback used at the
   * deadline gets), so the response still leaves by the budget plus that allowance. Returns true while it is
   * awaited; the task is then done in {@link fallbackSettled}.
   */
  private useFallback(task: TaskRun): boolean {
    let value: unknown;
    let then: unknown;
    try {
      const { fallback } = task.def;
      value = typeof fallback === 'function' ? (fallback as (e: unknown) => unknown)(task.error) : fallback;
      if ((typeof value === 'object' && value !== null) || typeof value === 'function') {
        then = (value as { then?: unknown }).then;
      }
    } catch (error) {
      task.fallbackFailed(error, 'threw');
      return false;
    }
    if (typeof then !== 'function') {
      task.usedFallback = true;
      task.value = value;
      return false;
    }
    this.pendingFallbacks++;
    const startedAt = performance.now();
    const allowance = Math.max(this.deadline - startedAt, 0) + this.scope.runtime.options.fallbackMs;
    let timer: NodeJS.Timeout | null = null;
    const done = (ok: boolean, result: unknown, how?: string): void => {
      if (timer === null) return;
      clearTimeout(timer);
      timer = null;
      task.fallbackMs = performance.now() - startedAt;
      if (ok) {
        task.usedFallback = true;
        task.value = result;
      } else task.fallbackFailed(result, how!);
      this.fallbackSettled(task);
    };
    timer = timerIn(
      allowance,
      () => done(false, task.error, `did not finish within ${Math.ceil(allowance)} ms`),
      undefined,
    );
    task.fallbackPending = true;
    // The thenable's own `then`, called once; whatever it does (throws, calls back twice, never) is contained.
    new Promise((resolve, reject) =>
      (then as (f: unknown, r: unknown) => void).call(value, resolve, reject),
    ).then(
      (result) => done(true, result),
      (error: unknown) => done(false, error, 'rejected'),
    );
    return true;
  }

  private fallbackSettled(task: TaskRun): void {
    task.fallbackPending = false;
    this.pendingFallbacks--;
    if (this.done) {
      this.scope.runtime.count(task);
      return;
    }
    this.taskDone(task);
    if (this.waiting && this.pendingFallbacks === 0 && !this.done) this.finish();
  }

  /**
   * Ends every unsettled task at once with `status` (the deadline passed, the client left, the response was
   * sent). In `all` mode the call rejects with `callError` naming every required task that did not make it.
   */
  expire(
    status: TaskStatus,
    taskError: (name: string) => unknown,
    callError: (names: string[]) => FanoutError,
  ): void {
    if (this.done) return;
    const missed: string[] = [];
    this.settleAll(() => {
      for (const task of this.tasks) {
        if (task.state === 'settled') continue;
        task.settle(status, taskError(task.name));
        if (!task.usedFallback && !task.fallbackPending) missed.push(task.name);
      }
    });
    this.finish(this.mode === 'all' && missed.length > 0 ? callError(missed) : undefined);
  }

  private failFast(error: FanoutError): void {
    this.settleAll(() => {
      for (const task of this.tasks) {
        if (task.state !== 'settled') {
          task.settle(
            'aborted',
            quietly(() => new SiblingFailedError(task.name, error)),
          );
        }
      }
    });
    this.finish(error);
  }

  /**
   * Settles many tasks at once: each is not judged alone (`bulk`), and the slots they free are handed out only
   * at the end, so none goes to a sibling about to be settled too.
   */
  private settleAll(settle: () => void): void {
    this.bulk = true;
    try {
      this.scope.runtime.scheduler.held(settle);
    } finally {
      this.bulk = false;
    }
  }

  /**
   * Resolves or rejects the call once. Without an error it waits for fallbacks still being awaited. Once the
   * client has gone it rejects with `ClientClosedError` whatever the tasks gave, so the handler stops there.
   */
  private finish(error?: FanoutError): void {
    if (this.done) return;
    if (!error && this.scope.disconnected) {
      error = quietly(
        () => new ClientClosedError(this.tasks.filter((t) => t.status !== 'fulfilled').map((t) => t.name)),
      );
    }
    if (!error && this.pendingFallbacks > 0) {
      this.waiting = true;
      return;
    }
    this.done = true;
    this.timer = clear(this.timer);
    this.scope.untrack(this);
    if (error) {
      // The shared signal, if no sibling's end aborted it yet (a failed task whose siblings had all finished).
      const controller = this.controller;
      if (controller !== null && !controller.signal.aborted) controller.abort(error);
      return this.reject(error);
    }
    // Task names are user input: `__proto__` must be an own key here too, not the result's prototype.
    const out: Record<string, unknown> = {};
    const tasks = this.tasks;
    if (this.mode === 'all') {
      // Inlined (setOwn's one store site, shared with every other caller, cost ~0.4 µs a task at 1000 tasks).
      for (let i = 0; i < tasks.length; i++) {
        const task = tasks[i]!;
        const name = task.name;
        if (name === '__proto__') setOwn(out, name, task.value);
        else out[name] = task.value;
      }
    } else for (const task of tasks) setOwn(out, task.name, settledOf(task));
    this.resolve(out);
  }
}

function onCallDeadline(call: Call): void {
  const budgetMs = call.budgetMs!;
  call.expire(
    'timeout',
    (name) => new BudgetExceededError([name], budgetMs),
    (names) => new BudgetExceededError(names, budgetMs),
  );
}

/** The error an `all()` rejects with when this required task fails. */
function failureOf(task: TaskRun): FanoutError {
  const error = task.error;
  if (task.fallbackFailure !== undefined) return new TaskFailedError(task.name, error, task.fallbackFailure);
  if (task.status === 'rejected') {
    // The package's own verdict on this task passes through (a crashed worker, a broken worker script: 500);
    // anything else the task threw is a failed dependency, 502, with the original in `cause`.
    if (isInstance(error, TaskFailedError) && error.tasks[0] === task.name) return error;
    if (isInstance(error, WorkerScriptError) || isInstance(error, WorkerArgumentsError)) return error;
    return new TaskFailedError(task.name, error);
  }
  return isInstance(error, FanoutError) ? error : new TaskFailedError(task.name, error);
}

function valuesOf(tasks: readonly TaskRun[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const task of tasks) setOwn(out, task.name, task.value);
  return out;
}

/** `out[key] = value` as an own property even for `__proto__`, the one key whose assignment sets the prototype. */
export function setOwn(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(out, key, { value, writable: true, enumerable: true, configurable: true });
  } else out[key] = value;
}

function settledOf(task: TaskRun): Settled<unknown> {
  const out: Settled<unknown> = {
    status: task.status!,
    ms: round(task.settledAt + task.fallbackMs - task.submittedAt),
  };
  if (task.status === 'fulfilled' || task.usedFallback) out.value = task.value;
  if (task.status !== 'fulfilled') out.error = task.error;
  return out;
}

export function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
