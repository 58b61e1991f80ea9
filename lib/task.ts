import { performance } from 'node:perf_hooks';
import { BudgetExceededError, isInstance, OverloadedError, quietly } from './errors';
import type { Job } from './scheduler';
import type { Call } from './call';
import type { TaskDef } from './task-def';
import type {
  TaskContext,
  TaskStatus,
  Transferable,
  WorkerArgs,
  WorkerMethodName,
  WorkerResult,
} from './types';

type State = 'waiting' | 'queued' | 'running' | 'settled';

/**
 * One task of one call, from submission to settlement. Two ends are kept apart on purpose: the *outcome*
 * (reported once to the call: value, timeout, abort …) and the *slot* (given back to the scheduler only when
 * the task's promise really settles, or `graceMs` after it was aborted, when it is written off).
 */
export class TaskRun implements Job {
  nextJob: Job | null = null;
  prevJob: Job | null = null;
  queued = false;

  state: State = 'waiting';
  status: TaskStatus | undefined = undefined;
  value: unknown = undefined;
  error: unknown = undefined;
  /** The value came from `fallback`. */
  usedFallback = false;
  /** An asynchronous fallback is being awaited; then how long it took. */
  fallbackPending = false;
  fallbackMs = 0;
  /** How the fallback failed (`threw`, `rejected` …), when it did; `error` then holds its error. */
  fallbackFailure: string | undefined = undefined;
  /** Submission (dependencies resolved) and settlement, in `performance.now()` ms. */
  submittedAt: number;
  settledAt = 0;
  /** When it got its slot (set by the scheduler, which samples the time it held it); `NaN` once lent. */
  startedAt = 0;
  /** This task's own deadline (performance ms): the call's, or earlier through `timeoutMs`. */
  deadline: number;

  /** Tasks of the same call waiting on this one, and how many of its own dependencies are still pending. */
  readonly dependents: TaskRun[] = [];
  readonly deps: TaskRun[] = [];
  pendingDeps = 0;
  results: Record<string, unknown> = EMPTY;

  private holdsSlot = false;
  /** The IO slot is lent to the scheduler while a `ctx.worker()` call waits or runs. */
  private lentSlot = false;
  private retaking: Promise<void> | null = null;
  private controller: AbortController | null = null;
  private timer: NodeJS.Timeout | null = null;
  private graceTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly call: Call,
    readonly def: TaskDef,
  ) {
    this.submittedAt = performance.now();
    this.deadline = call.deadline;
  }

  get name(): string {
    return this.def.name;
  }

  /** Dependencies resolved: ask for a slot within the deadline. */
  submit(): void {
    if (this.state !== 'waiting') return;
    const scope = this.call.scope;
    const now = (this.submittedAt = performance.now());
    const { timeoutMs } = this.def;
    const ownTimeout = timeoutMs !== undefined && now + timeoutMs < this.deadline;
    if (ownTimeout) this.deadline = now + timeoutMs;
    const ended = scope.ending(this.name);
    if (ended) return this.settle(ended.status, ended.error);
    if (this.deadline <= now) return this.settle('timeout', this.timeoutError());
    const runtime = scope.runtime;
    if (runtime.closed) {
      return this.settle('shed', new OverloadedError([this.name], 'the middleware is closing', 5));
    }
    if (ownTimeout) {
      this.timer = setTimeout(onTimeout, timeoutMs, this);
      this.timer.unref();
    }
    this.state = 'queued';
    const scheduler = runtime.scheduler;
    if (scheduler.submit(scope.lane, this) === 'shed') {
      this.state = 'waiting';
      const detail = scheduler.shedDetail();
      this.settle(
        'shed',
        quietly(() => new OverloadedError([this.name], detail)),
      );
    }
  }

  /**
   * The scheduler gave this task its slots. Everything the user's function returns or throws is hostile here,
   * as in p-limit: a thrown value, a thenable whose `then` getter throws, a revoked Proxy. All of it becomes
   * this task's rejection, never an exception into the scheduler (which is mid-drain) or an orphaned promise.
   */
  start(): void {
    this.state = 'running';
    this.holdsSlot = !this.slotless;
    try {
      const result = this.def.run(new Context(this));
      if ((typeof result === 'object' && result !== null) || typeof result === 'function') {
        // Promise.resolve reads `then` itself and turns a throwing getter into a rejection; the native `then`
        // ignores a hostile own `then` on a real promise.
        then.call(Promise.resolve(result), this.onFulfilled, this.onRejected);
      } else queueMicrotask(() => this.onFulfilled(result));
    } catch (error) {
      // Never release synchronously inside start(): the scheduler may be mid-drain.
      queueMicrotask(() => this.onRejected(error));
    }
  }

  private readonly onFulfilled = (value: unknown): void => {
    this.ran('fulfilled', value);
  };

  private readonly onRejected = (error: unknown): void => {
    // The worker pool sheds a call for this very task when its queue is full: that is a shed, not a failure.
    const shed = isInstance(error, OverloadedError) && error.tasks.includes(this.name);
    this.ran(shed ? 'shed' : 'rejected', error);
  };

  /** The task's promise settled: give the slot back and record the outcome (unless it was recorded already). */
  private ran(status: TaskStatus, valueOrError: unknown): void {
    const scheduler = this.call.scope.runtime.scheduler;
    // The slot is handed out only after the outcome is applied: a failure must drop the queued siblings it
    // aborts before the freed slot could start one of them.
    scheduler.hold();
    try {
      // Only a fulfilled task's time is a latency sample: a fast failure would read as a fast downstream.
      if (status !== 'fulfilled') this.startedAt = Number.NaN;
      this.releaseSlot();
      if (this.state !== 'settled') this.settle(status, valueOrError);
    } finally {
      scheduler.resume();
    }
  }

  /** Records the outcome once; aborts the work if it is still running, keeping its slot for `graceMs`. */
  settle(status: TaskStatus, valueOrError: unknown): void {
    if (this.state === 'settled') return;
    const previous = this.state;
    this.state = 'settled';
    this.status = status;
    this.settledAt = performance.now();
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const scope = this.call.scope;
    if (status === 'fulfilled') this.value = valueOrError;
    else {
      this.error = valueOrError;
      if (previous === 'queued') scope.runtime.scheduler.cancel(scope.lane, this);
      this.controller?.abort(valueOrError);
      if (this.holdsSlot) {
        // Aborted by us while running: the time it keeps the slot says nothing about the downstream's latency.
        this.startedAt = Number.NaN;
        this.startGrace();
      }
    }
    this.call.onTaskSettled(this);
  }

  fallbackFailed(error: unknown, how: string): void {
    this.fallbackFailure = `failed and its fallback ${how}`;
    this.error = error;
  }

  /** The scheduler drops this queued task: its turn came too late for it to finish (503, not a late 504). */
  drop(detail: string): void {
    this.settle(
      'shed',
      quietly(() => new OverloadedError([this.name], detail)),
    );
  }

  timeoutError(): BudgetExceededError {
    const scope = this.call.scope;
    const { timeoutMs } = this.def;
    if (timeoutMs !== undefined && this.deadline < this.call.deadline) {
      return new BudgetExceededError([this.name], timeoutMs, 'timeout');
    }
    return new BudgetExceededError([this.name], this.call.budgetMs ?? scope.budgetMs);
  }

  /** Created on first read of `ctx.signal`: tasks that never look at it cost no controller. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.state === 'settled' && this.status !== 'fulfilled' && this.status !== 'rejected') {
        this.controller.abort(this.error);
      }
    }
    return this.controller.signal;
  }

  /** A task that only waits on a worker thread (`req.fanout.worker()`): it takes a thread's slot, no IO slot. */
  get slotless(): boolean {
    return WORKER_ONLY.has(this.def.run);
  }

  /**
   * `ctx.worker()`. The call waits for a thread and runs without this task's IO slot: the slot is lent to the
   * scheduler meanwhile (CPU work never makes IO tasks wait) and taken back, ahead of the request's waiting
   * tasks, before the task sees the result. A task settled meanwhile takes nothing back.
   */
  worker<T>(method: string, args: readonly unknown[], transfer: readonly Transferable[] | undefined): Promise<T> {
    const scope = this.call.scope;
    let result: Promise<T>;
    try {
      result = scope.runtime.workerPool().exec<T>(method, args, {
        task: this.name,
        signal: this.signal,
        arrival: scope.lane.arrival,
        lane: scope.lane.id,
        ...(transfer ? { transfer } : {}),
      });
    } catch (error) {
      return Promise.reject(error);
    }
    this.lendSlot();
    return result.then(
      (value) => this.retakeSlot().then(() => value),
      (error: unknown) =>
        this.retakeSlot().then(() => {
          throw error;
        }),
    );
  }

  private lendSlot(): void {
    if (!this.holdsSlot || this.state === 'settled') return;
    this.holdsSlot = false;
    this.lentSlot = true;
    this.startedAt = Number.NaN;
    const scope = this.call.scope;
    scope.runtime.scheduler.lend(scope.lane);
  }

  /** Takes the lent slot back; resolves once the task holds it again, or at once if the task settled meanwhile. */
  private retakeSlot(): Promise<void> {
    if (!this.lentSlot) return Promise.resolve();
    if (this.retaking) return this.retaking;
    const scope = this.call.scope;
    const scheduler = scope.runtime.scheduler;
    if (this.state === 'settled') {
      this.lentSlot = false;
      scheduler.returned();
      return Promise.resolve();
    }
    this.retaking = new Promise<void>((resolve) => {
      const signal = this.signal;
      const retake: Job = {
        nextJob: null,
        prevJob: null,
        queued: false,
        start: () => {
          signal.removeEventListener('abort', onSettled);
          this.retaking = null;
          this.lentSlot = false;
          // Settled (fulfilled) while it waited: nothing needs the slot; give it back off the scheduler's stack.
          if (this.state === 'settled') queueMicrotask(() => scheduler.release(scope.lane));
          else this.holdsSlot = true;
          resolve();
        },
      };
      // Settled while waiting (deadline, abort, a failed sibling): leave the queue, take nothing.
      const onSettled = (): void => {
        scheduler.cancel(scope.lane, retake);
        this.retaking = null;
        this.lentSlot = false;
        resolve();
      };
      signal.addEventListener('abort', onSettled, { once: true });
      scheduler.retake(scope.lane, retake);
    });
    return this.retaking;
  }

  private releaseSlot(): void {
    if (!this.holdsSlot) return;
    this.holdsSlot = false;
    if (this.graceTimer) {
      clearTimeout(this.graceTimer);
      this.graceTimer = null;
    }
    const scope = this.call.scope;
    scope.runtime.scheduler.release(scope.lane, this);
  }

  private startGrace(): void {
    const { graceMs } = this.call.scope.runtime.options;
    if (graceMs === 0) return this.writeOff();
    this.graceTimer = setTimeout(onGraceOver, graceMs, this);
    this.graceTimer.unref();
  }

  /** The aborted task ignored its signal for `graceMs`: stop waiting for it and free its slot. */
  writeOff(): void {
    if (!this.holdsSlot) return;
    this.graceTimer = null;
    this.call.scope.runtime.abandon(this);
    this.releaseSlot();
  }
}

function onTimeout(task: TaskRun): void {
  // With graceMs 0 the slot is freed inside settle(), before fail-fast drops the queued siblings.
  task.call.scope.runtime.scheduler.held(() => task.settle('timeout', task.timeoutError()));
}

function onGraceOver(task: TaskRun): void {
  task.writeOff();
}

const then = Promise.prototype.then as (
  this: Promise<unknown>,
  onFulfilled: (value: unknown) => void,
  onRejected: (error: unknown) => void,
) => Promise<void>;

/** `run` functions of `req.fanout.worker()` tasks, which need no IO slot (see {@link workerOnly}). */
const WORKER_ONLY = new WeakSet<object>();

/** Marks `run` as a task that only calls a worker: it takes a thread's slot and no IO slot. */
export function workerOnly<F extends object>(run: F): F {
  WORKER_ONLY.add(run);
  return run;
}

const EMPTY: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>;

/**
 * What a task function receives: a thin view over its task, so nothing is allocated until it is read. The
 * methods are getters returning functions so that `({ signal, headers }) => fetch(url, { signal, headers:
 * headers() })` works unbound.
 */
class Context implements TaskContext {
  constructor(private readonly task: TaskRun) {}

  get signal(): AbortSignal {
    return this.task.signal;
  }

  get deadline(): number {
    return Math.round(Date.now() + this.task.deadline - performance.now());
  }

  get remainingMs(): () => number {
    const task = this.task;
    return () => Math.max(0, task.deadline - performance.now());
  }

  get results(): Record<string, unknown> {
    return this.task.results;
  }

  get attempt(): number {
    return 0;
  }

  get headers(): () => Record<string, string> {
    const task = this.task;
    return () => task.call.scope.outboundHeaders(task.deadline);
  }

  get worker(): TaskContext['worker'] {
    const task = this.task;
    return <M extends WorkerMethodName>(
      method: M,
      args?: WorkerArgs<M>,
      options?: { transfer?: readonly Transferable[] },
    ): Promise<WorkerResult<M>> =>
      task.worker<WorkerResult<M>>(method, (args ?? []) as readonly unknown[], options?.transfer);
  }
}
