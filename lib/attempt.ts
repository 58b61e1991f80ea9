import { performance } from 'node:perf_hooks';
import { isInstance, OverloadedError } from './errors';
import { clear, epochOf, remaining, timerIn } from './deadline';
import { downstreamOutcome, fetchWithin } from './fetch';
import { originArgument } from './transit';
import { RUN_LIMITED } from './fleet-limit';
import type { Runtime } from './runtime';
import type { Bulkhead, Job, Lane } from './scheduler';
import type {
  TaskContext,
  TaskFn,
  TaskProbe,
  Transferable,
  WorkerArgs,
  WorkerMethodName,
  WorkerResult,
} from './types';

/**
 * What an attempt needs from its task (task.ts has it; passed down as this interface, never imported): the
 * function, where its slot lives, the deadline it works to, and where to report how it ended.
 */
export interface AttemptOwner {
  readonly name: string;
  readonly def: { readonly run: TaskFn };
  readonly runtime: Runtime;
  readonly lane: Lane;
  readonly bulkhead: Bulkhead;
  readonly slotless: boolean;
  readonly executionDeadline: number;
  readonly results: Record<string, unknown>;
  readonly request: { outboundHeaders(deadline: number, origin?: string): Record<string, string> };
  /** Observers' probe around each call of `run` (`fo.observe()`), or null. */
  readonly probe: TaskProbe | null;
  attemptStarted(attempt: Attempt): void;
  /** A `worker()` call of this attempt got its thread after waiting `waitMs`. */
  threadStarted(attempt: Attempt, waitMs: number): void;
  /** `now`: when it settled, performance ms. */
  attemptSettled(attempt: Attempt, status: AttemptStatus, valueOrError: unknown, now: number): void;
  attemptTimedOut(attempt: Attempt): void;
  attemptDropped(attempt: Attempt, detail: string): void;
  /** The controller this attempt's signal shares with its call's other plain tasks, or null for its own. */
  sharedController(): AbortController | null;
}

/** How an attempt's promise ended, as its task sees it. */
export type AttemptStatus = 'fulfilled' | 'rejected' | 'shed' | 'timeout';

/**
 * One attempt of a task: the scheduler's job. It has its own slot, its own abort controller (`ctx.signal`), its
 * own `attemptTimeoutMs` timer and its own grace write-off. Two ends are kept apart on purpose: the attempt
 * *ends* for its task once (it settled, lost to a hedge, timed out, or its task ended), while its *slot* is
 * given back to the scheduler only when its promise really settles, or `graceMs` after it was aborted, when it
 * is written off. The task (task.ts) decides what an ended attempt means: the outcome, a retry, nothing.
 */
export class Attempt implements Job {
  nextJob: Job | null = null;
  prevJob: Job | null = null;
  queued = false;
  /** When it got its slot (set by the scheduler, which samples the time it held it); `NaN` skips the sample. */
  startedAt = 0;
  /** The loop monitor's delay total when it got its slot (set by the scheduler). */
  loopAt = 0;
  readonly submittedAt: number;
  /** When it started running, performance ms; 0 before. */
  ranAt = 0;
  /** Over for its task: settled, lost, timed out or aborted. Its slot may still be held (grace). */
  ended = false;
  running = false;

  private holdsSlot = false;
  /** The IO slot is lent to the scheduler while a `ctx.worker()` call waits or runs. */
  private lentSlot = false;
  private retaking: Promise<void> | null = null;
  private controller: AbortController | null = null;
  /** Its controller is its call's, shared (task.ts `plain`): aborted with the call, not by the attempt's failure. */
  private shared = false;
  private abortReason: unknown = undefined;
  private aborted = false;
  private timer: NodeJS.Timeout | null = null;
  private graceTimer: NodeJS.Timeout | null = null;
  /** What `ctx.fetch()` lets go of when the attempt settles (its link to a caller's own signal). */
  private disposals: Array<() => void> | null = null;

  constructor(
    readonly task: AttemptOwner,
    /** `ctx.attempt`: 0 for the first, then one more for every retry or hedge. */
    readonly index: number,
    readonly hedge: boolean,
    /** When it was submitted, performance ms: its task's clock read, when it was just made. */
    submittedAt = performance.now(),
  ) {
    this.submittedAt = submittedAt;
  }

  /** Its task's name (the scheduler keeps service times per name). */
  get name(): string {
    return this.task.name;
  }

  /** Its dependency's bulkhead: its task's. */
  get bulkhead(): Bulkhead {
    return this.task.bulkhead;
  }

  /** What the admission policy reads: the task's deadline (the latest waiter's for a shared execution). */
  get deadline(): number {
    return this.task.executionDeadline;
  }

  /** A task that only waits on a worker thread (`req.fanout.worker()`): it takes a thread's slot, no IO slot. */
  get slotless(): boolean {
    return this.task.slotless;
  }

  /**
   * The scheduler gave this attempt its slot. Everything the user's function returns or throws is hostile here,
   * as in p-limit: a thrown value, a thenable whose `then` getter throws, a revoked Proxy. All of it becomes
   * this attempt's rejection, never an exception into the scheduler (which is mid-drain) or an orphaned promise.
   */
  start(): void {
    this.running = true;
    this.holdsSlot = !this.slotless;
    this.ranAt = this.startedAt > 0 ? this.startedAt : performance.now();
    this.task.attemptStarted(this);
    try {
      const probe = this.task.probe;
      const result =
        probe === null
          ? this.task.def.run(new Context(this))
          : probe.run(this.index, () => this.task.def.run(new Context(this)));
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

  /** Arms the `attemptTimeoutMs` timer (by the task, when the attempt's own limit ends before the task's). */
  limit(ms: number): void {
    this.timer = timerIn(ms, onAttemptTimeout, this);
  }

  private readonly onFulfilled = (value: unknown): void => {
    this.ran('fulfilled', value);
  };

  private readonly onRejected = (error: unknown): void => {
    // The worker pool sheds a call for this very task when its queue is full: that is a shed, not a failure.
    const shed = isInstance(error, OverloadedError) && error.tasks.includes(this.task.name);
    // A callee's 504 or 503 through `ctx.fetch()` stays a timeout or a shed here.
    this.ran(shed ? 'shed' : (downstreamOutcome(error) ?? 'rejected'), error);
  };

  /** The attempt's promise settled: give the slot back, then tell the task (unless it ended already). */
  private ran(status: AttemptStatus, valueOrError: unknown): void {
    const scheduler = this.task.runtime.scheduler;
    // The slot is handed out only after the outcome is applied: a failure must drop the queued siblings it
    // aborts before the freed slot could start one of them.
    scheduler.hold();
    try {
      // Only a fulfilled attempt's time is a latency sample: a fast failure would read as a fast downstream.
      if (status !== 'fulfilled') {
        this.startedAt = Number.NaN;
        // As the task's signal always was: aborted when the task fails, for listeners that still hold resources.
        if (!this.aborted) {
          this.aborted = true;
          this.abortReason = valueOrError;
          // A shared signal is aborted by the call, which fails fast now (or has ended) and ends every sibling.
          if (!this.shared) this.controller?.abort(valueOrError);
        }
      }
      this.running = false;
      // One clock read for the slot's latency sample and the task's.
      const now = performance.now();
      this.releaseSlot(now);
      if (this.disposals !== null) for (const dispose of this.disposals.splice(0)) dispose();
      if (!this.ended) {
        this.ended = true;
        this.timer = clear(this.timer);
        this.task.attemptSettled(this, status, valueOrError, now);
      }
    } finally {
      scheduler.resume();
    }
  }

  /**
   * Ends the attempt for its task (it lost, timed out, or its task ended): a queued attempt leaves the queue,
   * a running one is aborted and keeps its slot until it settles or `graceMs` passes.
   */
  abort(reason: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.timer = clear(this.timer);
    const task = this.task;
    if (this.queued) task.runtime.scheduler.cancel(task.lane, this);
    this.aborted = true;
    this.abortReason = reason;
    this.controller?.abort(reason);
    if (this.holdsSlot) {
      // Aborted by us while running: the time it keeps the slot says nothing about the downstream's latency.
      this.startedAt = Number.NaN;
      this.startGrace();
    }
  }

  /** The scheduler drops this queued attempt: its turn came too late for it to finish (503, not a late 504). */
  drop(detail: string): void {
    if (this.ended) return;
    this.ended = true;
    this.task.attemptDropped(this, detail);
  }

  /** Runs `dispose` when the attempt's promise settles (an abort reaches it through the signal); false if it did. */
  atEnd(dispose: () => void): boolean {
    if (this.ended && !this.running) return false;
    (this.disposals ??= []).push(dispose);
    return true;
  }

  /**
   * Created on first read of `ctx.signal`: tasks that never look at it cost no controller. A plain task's first
   * attempt takes its call's shared controller instead (task.ts).
   */
  get signal(): AbortSignal {
    let controller = this.controller;
    if (controller === null) {
      const shared = this.task.sharedController();
      this.shared = shared !== null;
      controller = this.controller = shared ?? new AbortController();
      if (this.aborted && !controller.signal.aborted) controller.abort(this.abortReason);
    }
    return controller.signal;
  }

  /**
   * `ctx.worker()`. The call waits for a thread and runs without this attempt's IO slot: the slot is lent to
   * the scheduler meanwhile (CPU work never makes IO tasks wait) and taken back, ahead of the request's waiting
   * tasks, before the task sees the result. An attempt that ended meanwhile takes nothing back.
   */
  worker<T>(
    method: string,
    args: readonly unknown[],
    transfer: readonly Transferable[] | undefined,
  ): Promise<T> {
    const task = this.task;
    const lane = task.lane;
    const asked = performance.now();
    let result: Promise<T>;
    try {
      result = task.runtime.workerPool().exec<T>(method, args, {
        task: task.name,
        signal: this.signal,
        deadline: this.deadline,
        arrival: lane.arrival,
        lane: lane.id,
        onStart: () => task.threadStarted(this, performance.now() - asked),
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
    if (!this.holdsSlot || this.ended) return;
    this.holdsSlot = false;
    this.lentSlot = true;
    this.startedAt = Number.NaN;
    this.task.runtime.scheduler.lend(this.task.lane, this);
  }

  /** Takes the lent slot back; resolves once the attempt holds it again, or at once if it ended meanwhile. */
  private retakeSlot(): Promise<void> {
    if (!this.lentSlot) return Promise.resolve();
    if (this.retaking) return this.retaking;
    const lane = this.task.lane;
    const bulkhead = this.task.bulkhead;
    const scheduler = this.task.runtime.scheduler;
    if (this.ended) {
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
        bulkhead,
        start: () => {
          signal.removeEventListener('abort', onEnded);
          this.retaking = null;
          this.lentSlot = false;
          // Ended while it waited: nothing needs the slot; give it back off the scheduler's stack.
          if (this.ended) queueMicrotask(() => scheduler.release(lane, undefined, bulkhead));
          else this.holdsSlot = true;
          resolve();
        },
      };
      // Ended while waiting (deadline, abort, a failed sibling, a hedge won): leave the queue, take nothing.
      const onEnded = (): void => {
        scheduler.cancel(lane, retake);
        this.retaking = null;
        this.lentSlot = false;
        resolve();
      };
      signal.addEventListener('abort', onEnded, { once: true });
      scheduler.retake(lane, retake);
    });
    return this.retaking;
  }

  /** `now`: the caller's clock read, if it has one. */
  private releaseSlot(now?: number): void {
    if (!this.holdsSlot) return;
    this.holdsSlot = false;
    const runtime = this.task.runtime;
    if (this.graceTimer !== null) {
      this.graceTimer = clear(this.graceTimer);
      runtime.graced.delete(this);
    }
    runtime.scheduler.release(this.task.lane, this, undefined, now);
  }

  private startGrace(): void {
    const { graceMs } = this.task.runtime.options;
    if (graceMs === 0) return this.writeOff();
    this.graceTimer = timerIn(graceMs, onGraceOver, this);
    this.task.runtime.graced.add(this);
  }

  /** The aborted attempt ignored its signal for `graceMs`: stop waiting for it and free its slot. */
  writeOff(): void {
    if (!this.holdsSlot) return;
    // releaseSlot() clears the grace timer: spent when it called this, pending when close() did.
    this.task.runtime.abandon(this.task.name);
    this.releaseSlot();
  }
}

function onAttemptTimeout(attempt: Attempt): void {
  attempt.task.runtime.scheduler.held(() => attempt.task.attemptTimedOut(attempt));
}

function onGraceOver(attempt: Attempt): void {
  attempt.writeOff();
}

const then = Promise.prototype.then as (
  this: Promise<unknown>,
  onFulfilled: (value: unknown) => void,
  onRejected: (error: unknown) => void,
) => Promise<unknown>;

/**
 * What a task function receives: a thin view over its attempt, so nothing is allocated until it is read. The
 * methods are getters returning functions so that `({ signal, headers }) => fetch(url, { signal, headers:
 * headers() })` works unbound.
 */
class Context implements TaskContext {
  constructor(private readonly of: Attempt) {}

  get signal(): AbortSignal {
    return this.of.signal;
  }

  get deadline(): number {
    return epochOf(this.of.task.executionDeadline);
  }

  get remainingMs(): () => number {
    const task = this.of.task;
    return () => remaining(task.executionDeadline);
  }

  get results(): Record<string, unknown> {
    return this.of.task.results;
  }

  get attempt(): number {
    return this.of.index;
  }

  get headers(): TaskContext['headers'] {
    const task = this.of.task;
    return (url) => task.request.outboundHeaders(task.executionDeadline, originArgument(url));
  }

  get fetch(): TaskContext['fetch'] {
    const attempt = this.of;
    const task = attempt.task;
    return (url, init) =>
      fetchWithin(task.name, url, init, {
        signal: attempt.signal,
        budget: (origin) => task.request.outboundHeaders(task.executionDeadline, origin),
        transits: task.runtime.transits,
        atEnd: (dispose) => attempt.atEnd(dispose),
      });
  }

  /** A task with `limit` (task-def.ts wraps its `run`): waits for a fleet permit, runs, gives it back. */
  [RUN_LIMITED](limit: string, run: TaskFn): Promise<unknown> {
    const attempt = this.of;
    const task = attempt.task;
    return task.runtime.limits.run(limit, run, this, attempt.signal, task.executionDeadline);
  }

  get worker(): TaskContext['worker'] {
    const attempt = this.of;
    return <M extends WorkerMethodName>(
      method: M,
      args?: WorkerArgs<M>,
      options?: { transfer?: readonly Transferable[] },
    ): Promise<WorkerResult<M>> =>
      attempt.worker<WorkerResult<M>>(method, (args ?? []) as readonly unknown[], options?.transfer);
  }
}
