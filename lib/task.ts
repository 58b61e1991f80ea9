import { performance } from 'node:perf_hooks';
import { Attempt, type AttemptOwner, type AttemptStatus } from './attempt';
import { clear, timerIn, within } from './deadline';
import {
  BudgetExceededError,
  ClientClosedError,
  FanoutError,
  isInstance,
  OverloadedError,
  quietly,
  quote,
  TaskSkippedError,
} from './errors';
import { retryHint } from './fetch';
import type { Runtime } from './runtime';
import type { Bulkhead, Lane } from './scheduler';
import type { Flight, FlightWaiter } from './single-flight';
import type { TaskDef } from './task-def';
import type { TaskProbe, TaskStatus } from './types';

type State = 'waiting' | 'queued' | 'running' | 'settled';

/** What a task needs from its request (scope.ts has it; passed down as this interface, never imported). */
export interface RequestHost {
  readonly runtime: Runtime;
  readonly lane: Lane;
  readonly budgetMs: number;
  /** The request is over: deadline passed, client gone or response sent. */
  readonly over: boolean;
  /** How a task submitted now must end at once because the request is over, if it is. */
  ending(name: string): { status: TaskStatus; error: FanoutError } | undefined;
  outboundHeaders(deadline: number, origin?: string): Record<string, string>;
}

/** What a task needs from its call (call.ts has it). */
export interface TaskHost {
  readonly scope: RequestHost;
  /** The call's deadline, performance ms. */
  readonly deadline: number;
  /** The call's own budget when tighter than the request's, for error messages. */
  readonly budgetMs: number | undefined;
  onTaskSettled(task: TaskRun): void;
  /** Whether its tasks may share one abort controller (an `all()` of several tasks: see `sharedController`). */
  readonly shares: boolean;
  /** The controller shared by the first attempts of its plain required tasks, made on first use. */
  sharedController(): AbortController;
}

/** Assumed duration of an attempt of a name never seen fulfil, ms: a retry needs its backoff plus this. */
const MIN_ATTEMPT_MS = 5;

/**
 * One task of one call, from submission to its outcome: its deadline, fallback (applied by the call),
 * dependencies, and its policy over attempts (attempt.ts): retries after a failed attempt, hedges while one is
 * slow, an execution shared with other tasks of the same `key` (single-flight.ts), or none at all when its
 * name's recent latency says it cannot finish (`skipWhenLate`). The outcome is reported once to the call; the
 * attempts' slots are their own business.
 */
export class TaskRun implements FlightWaiter, AttemptOwner {
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
  /**
   * When its first attempt got its slot (a `worker()` task, which needs none: when it started), performance
   * ms; 0 before, and for a task that never got one.
   */
  startedAt = 0;
  /** How long its first attempt's `worker()` calls waited for a thread, ms. */
  threadWaitMs = 0;
  /** The observers' probe (`fo.observe()`): null when nobody observes, which costs nothing. */
  readonly probe: TaskProbe | null;
  /** This task's own deadline (performance ms): the call's, or earlier through `timeoutMs`. */
  deadline: number;
  /** Its dependency's bulkhead (`dependency`, else its name), resolved once: every attempt uses it. */
  readonly bulkhead: Bulkhead;

  /**
   * Tasks of the same call waiting on this one, its own dependencies, and how many of them are still pending.
   * Shared empty lists until the call wires an `after` (call.ts): a task without one allocates none.
   */
  dependents: TaskRun[] = NO_TASKS;
  deps: readonly TaskRun[] = NO_TASKS;
  pendingDeps = 0;
  results: Record<string, unknown> = EMPTY;

  /** Attempts made (started or queued), and how many of them were retries and hedges. */
  attempts = 0;
  retried = 0;
  hedged = 0;
  /** Its outcome came from another task's execution with the same `key`. */
  coalesced = false;

  /** The attempt running or queued, and hedges running next to it. */
  private attempt: Attempt | null = null;
  private extra: Attempt[] | null = null;
  private flight: Flight | null = null;
  private timer: NodeJS.Timeout | null = null;
  private hedgeTimer: NodeJS.Timeout | null = null;
  private backoffTimer: NodeJS.Timeout | null = null;
  /** The failure that stands when a retry cannot be made or admitted. */
  private lastStatus: TaskStatus = 'rejected';
  private lastError: unknown = undefined;

  /** A task that only waits on a worker thread (`req.fanout.worker()`): it takes a thread's slot, no IO slot. */
  readonly slotless: boolean;
  /**
   * A plain task (`TaskDef.plain`) of an `all()` of several tasks: its one attempt can only be aborted with the
   * whole call (a failure fails the call fast, the deadline and the client end every task), so its `ctx.signal`
   * is the call's shared one. An AbortController costs Node 20 ~3 µs and a first listener on its signal ~2 µs
   * more: one per call, not one per task.
   */
  private readonly sharesSignal: boolean;

  constructor(
    readonly host: TaskHost,
    readonly def: TaskDef,
    /** When its call was made, performance ms (one clock read for all the call's tasks). */
    now: number,
  ) {
    this.submittedAt = now;
    this.deadline = host.deadline;
    this.slotless = def.slotless;
    // A task that only calls a worker takes no IO slot: no bulkhead of its own (the worker pool admits it).
    const scheduler = host.scope.runtime.scheduler;
    this.bulkhead = this.slotless ? scheduler.base : scheduler.bulkhead(def.dependency ?? def.name);
    this.probe = host.scope.runtime.observed ? host.scope.runtime.probe(this) : null;
    this.sharesSignal = host.shares && def.plain && !this.slotless;
  }

  /**
   * The controller of its attempt's `ctx.signal` when it is the call's shared one (see {@link sharesSignal}),
   * else null. A plain task makes one attempt only: no retry, no hedge.
   */
  sharedController(): AbortController | null {
    return this.sharesSignal ? this.host.sharedController() : null;
  }

  get name(): string {
    return this.def.name;
  }

  get request(): RequestHost {
    return this.host.scope;
  }

  get runtime(): Runtime {
    return this.host.scope.runtime;
  }

  get lane(): Lane {
    return this.host.scope.lane;
  }

  /** The deadline its attempts work to: its own, or the latest waiter's once it left a shared execution. */
  get executionDeadline(): number {
    return this.flight === null ? this.deadline : this.flight.deadline;
  }

  /**
   * Dependencies resolved: skip, join a shared execution, or ask for a slot within the deadline. `now`: the
   * caller's clock read, when it just made one (a call submitting its first tasks reads the clock once).
   */
  submit(now = performance.now()): void {
    if (this.state !== 'waiting') return;
    const scope = this.host.scope;
    this.submittedAt = now;
    const def = this.def;
    const deadline = (this.deadline = within(this.deadline, now, def.timeoutMs));
    const ended = scope.ending(this.name);
    if (ended) return this.settle(ended.status, ended.error);
    if (deadline <= now) return this.settle('timeout', this.timeoutError());
    const runtime = scope.runtime;
    if (runtime.closed) {
      return this.settle('shed', new OverloadedError([this.name], 'the middleware is closing', 5));
    }
    if (def.skipWhenLate) {
      const p95 = runtime.hopeless(this.name, deadline - now, now);
      if (p95 === p95) {
        return this.settle(
          'skipped',
          quietly(() => new TaskSkippedError(this.name, p95, deadline - now)),
        );
      }
    }
    if (deadline !== this.host.deadline) this.timer = timerIn(def.timeoutMs!, onTimeout, this);
    if (def.key !== undefined) {
      const { flight, joined } = runtime.flights.join(def.key, this);
      this.flight = flight;
      if (joined) {
        this.coalesced = true;
        this.state = 'running';
        runtime.counters.coalesced++;
        return;
      }
    }
    if (def.retries !== undefined) runtime.budgets(this.name).retry.deposit(now);
    if (def.hedgeMs !== undefined || def.hedgeQuantile !== undefined)
      runtime.budgets(this.name).hedge.deposit(now);
    this.state = 'queued';
    const attempt = (this.attempt = new Attempt(this, this.attempts++, false, now));
    const scheduler = runtime.scheduler;
    if (scheduler.submit(scope.lane, attempt) === 'shed') {
      this.attempt = null;
      const detail = scheduler.shedDetail();
      this.finish(
        'shed',
        quietly(() => new OverloadedError([this.name], detail)),
      );
    }
  }

  /** An attempt got its slot: arm its own limit and, for a first attempt or a retry, the hedge. */
  attemptStarted(attempt: Attempt): void {
    // Its wait counts from the attempt's own submission: the task's bookkeeping before it is not queueing.
    if (this.startedAt === 0)
      this.startedAt = this.submittedAt + Math.max(0, attempt.ranAt - attempt.submittedAt);
    const def = this.def;
    const attemptMs = def.attemptTimeoutMs;
    if (attemptMs !== undefined && attempt.ranAt + attemptMs < this.executionDeadline)
      attempt.limit(attemptMs);
    // An owner that left its shared execution: the attempt runs on for the others, with no hedge.
    if (this.state === 'settled') return;
    this.state = 'running';
    if (attempt.hedge || this.hedgeTimer !== null || this.hedged >= def.hedges) return;
    if (def.hedgeMs === undefined && def.hedgeQuantile === undefined) return;
    const delay = def.hedgeMs ?? this.runtime.quantile(this.name, def.hedgeQuantile!);
    // No estimate yet (fewer than 20 samples), or the hedge would start at or after the deadline: none.
    if (!(attempt.ranAt + delay < this.deadline)) return;
    this.hedgeTimer = timerIn(Math.max(1, Math.round(delay)), onHedge, this);
  }

  /** A `worker()` call of the attempt got its thread after `waitMs`: the first attempt's waits are queue time. */
  threadStarted(attempt: Attempt, waitMs: number): void {
    if (attempt.index === 0) this.threadWaitMs += waitMs;
  }

  /**
   * Its wait for a slot and for threads, ms (Server-Timing, `onTask`): its first attempt's, from the attempt's
   * submission to its slot, plus what its `worker()` calls waited for a thread. `NaN` for a task never run.
   */
  get queuedMs(): number {
    return this.startedAt === 0 ? Number.NaN : this.startedAt - this.submittedAt + this.threadWaitMs;
  }

  /** An attempt's promise settled before anything ended it. */
  attemptSettled(attempt: Attempt, status: AttemptStatus, valueOrError: unknown, now: number): void {
    this.forget(attempt);
    if (status === 'fulfilled') {
      const runtime = this.runtime;
      runtime.fulfilled(this.name, now - attempt.ranAt, now);
      if (attempt.hedge) runtime.counters.hedgeWins++;
      if (this.attempt !== null || this.extra !== null) {
        const lost = quietly(
          () =>
            new FanoutError(
              `Task ${quote(this.name)}: attempt ${attempt.index} fulfilled first; this one is aborted`,
              500,
              [this.name],
            ),
        );
        this.abortAttempts(lost);
      }
      return this.finish('fulfilled', valueOrError, now);
    }
    this.failed(status, valueOrError);
  }

  /** An attempt ran past `attemptTimeoutMs`: it is aborted (keeping its slot for `graceMs`) and counts as failed. */
  attemptTimedOut(attempt: Attempt): void {
    if (attempt.ended) return;
    const ms = this.def.attemptTimeoutMs!;
    const error = quietly(() => new BudgetExceededError([this.name], ms, 'timeout'));
    this.forget(attempt);
    attempt.abort(error);
    this.failed('timeout', error);
  }

  /** The scheduler dropped a queued attempt (its turn came too late): a first attempt is shed, a retry is not made. */
  attemptDropped(attempt: Attempt, detail: string): void {
    this.forget(attempt);
    if (this.attempt !== null || this.extra !== null) return;
    if (this.retried > 0) return this.finish(this.lastStatus, this.lastError);
    this.finish(
      'shed',
      quietly(() => new OverloadedError([this.name], detail)),
    );
  }

  /** A failed attempt: wait for a hedge still running, retry if the policy and the budgets allow, or fail. */
  private failed(status: TaskStatus, error: unknown): void {
    this.lastStatus = status;
    this.lastError = error;
    if (this.attempt !== null || this.extra !== null) return;
    // A callee's 503 (`ctx.fetch()`) may be retried after its Retry-After; the package's own shed is final.
    const retryable = status !== 'shed' || retryHint(error) !== undefined;
    if (this.state !== 'settled' && retryable && this.retry(error)) return;
    this.finish(status, error);
  }

  /**
   * Schedules a retry after a full-jitter exponential backoff, if the task has retries left, `retryOn` accepts
   * the error, the request is not over, what is left of the deadline holds the backoff and an attempt of the
   * name's recent median, and the retry budget has a token. Returns whether it did.
   */
  private retry(error: unknown): boolean {
    const policy = this.def.retries;
    if (policy === undefined || this.retried >= policy.max) return false;
    const scope = this.host.scope;
    if (scope.over || isInstance(error, ClientClosedError)) return false;
    const hint = retryHint(error);
    if (policy.retryOn !== undefined) {
      try {
        if (!policy.retryOn(error)) return false;
      } catch {
        return false;
      }
    } else if (hint !== undefined && !hint.retryable) return false;
    const runtime = scope.runtime;
    const now = performance.now();
    // Never before the callee's Retry-After.
    const backoff = Math.max(
      hint?.afterMs ?? 0,
      Math.round(Math.random() * policy.backoffMs * 2 ** this.retried),
    );
    const typical = runtime.quantile(this.name, 0.5, 5);
    const need = backoff + (typical === typical ? Math.max(typical, 1) : MIN_ATTEMPT_MS);
    if (this.deadline - now < need) return false;
    if (!runtime.budgets(this.name).retry.tryWithdraw(now)) {
      runtime.counters.retriesDenied++;
      return false;
    }
    runtime.counters.retries++;
    this.retried++;
    this.state = 'queued';
    this.backoffTimer = timerIn(Math.max(1, backoff), onBackoff, this);
    return true;
  }

  /** The backoff is over: a new attempt waits for a slot like any task (a shed retry leaves the failure standing). */
  retryNow(): void {
    this.backoffTimer = null;
    if (this.state === 'settled') return;
    const scope = this.host.scope;
    const ended = scope.ending(this.name);
    if (ended) return this.settle(ended.status, ended.error);
    if (scope.runtime.closed) return this.finish(this.lastStatus, this.lastError);
    const attempt = (this.attempt = new Attempt(this, this.attempts++, false));
    if (scope.runtime.scheduler.submit(scope.lane, attempt) === 'shed') {
      this.attempt = null;
      this.finish(this.lastStatus, this.lastError);
    }
  }

  /**
   * The hedge delay passed and the attempt still runs: one more attempt, only if a slot is free now with nobody
   * waiting (a hedge never queues and never sheds anyone) and the hedge budget has a token.
   */
  hedge(): void {
    this.hedgeTimer = null;
    const primary = this.attempt;
    if (this.state === 'settled' || primary === null || !primary.running) return;
    const scope = this.host.scope;
    const now = performance.now();
    const runtime = scope.runtime;
    // Like a retry, never after close(): it would only lengthen the drain.
    if (scope.over || this.deadline <= now || runtime.closed) return;
    const budget = runtime.budgets(this.name).hedge;
    if (budget.balance(now) < 1) return;
    const attempt = new Attempt(this, this.attempts, true);
    (this.extra ??= []).push(attempt);
    if (!runtime.scheduler.tryStart(scope.lane, attempt)) {
      this.forget(attempt);
      return;
    }
    this.attempts++;
    budget.tryWithdraw(now);
    this.hedged++;
    runtime.counters.hedges++;
    if (this.hedged < this.def.hedges) {
      const delay = now - primary.ranAt;
      if (now + delay < this.deadline)
        this.hedgeTimer = timerIn(Math.max(1, Math.round(delay)), onHedge, this);
    }
  }

  /** The outcome of the task's own execution (its attempts): shared with the waiters of its key, then recorded. */
  private finish(status: TaskStatus, valueOrError: unknown, now?: number): void {
    const flight = this.flight;
    if (flight !== null && flight.owner === this) {
      this.flight = null;
      if (this.state !== 'settled') this.record(status, valueOrError, now);
      flight.deliver(status as 'fulfilled', valueOrError);
      return;
    }
    if (this.state === 'settled') return;
    this.abortAttempts(valueOrError);
    this.record(status, valueOrError, now);
  }

  /**
   * Ends the task from outside (its timeout, the deadline, the client leaving, a failed sibling or dependency):
   * records the outcome once and aborts its attempts, which keep their slots for `graceMs`. A task that owns an
   * execution others still wait on (`key`) leaves it running for them.
   */
  settle(status: TaskStatus, valueOrError: unknown): void {
    if (this.state === 'settled') return;
    const flight = this.flight;
    let keep = false;
    if (flight !== null) {
      keep = flight.leave(this, valueOrError);
      if (!keep) this.flight = null;
    }
    if (!keep) this.abortAttempts(valueOrError);
    this.record(status, valueOrError);
    if (keep && this.attempt === null && this.extra === null) {
      // Between attempts (a retry's backoff, cleared above): no attempt will come, the failure stands for all.
      this.flight = null;
      flight!.deliver(this.lastStatus as 'rejected', this.lastError);
    }
  }

  /** A waiter of a shared execution: its outcome arrived. */
  fromFlight(status: TaskStatus, valueOrError: unknown): void {
    this.flight = null;
    if (this.state !== 'settled') this.record(status, valueOrError);
  }

  /** The owner of a shared execution, after it left: the last waiter left too, so the execution is aborted. */
  abandonExecution(reason: unknown): void {
    this.flight = null;
    this.abortAttempts(reason);
  }

  /** `now`: the clock read of the attempt that just settled, when there is one (a read fewer a task). */
  private record(status: TaskStatus, valueOrError: unknown, now = performance.now()): void {
    this.state = 'settled';
    this.status = status;
    this.settledAt = now;
    this.timer = clear(this.timer);
    this.hedgeTimer = clear(this.hedgeTimer);
    this.backoffTimer = clear(this.backoffTimer);
    if (status === 'fulfilled') this.value = valueOrError;
    else this.error = valueOrError;
    this.host.onTaskSettled(this);
  }

  /** Ends every live attempt (a running one keeps its slot until it settles or `graceMs` passes). */
  private abortAttempts(reason: unknown): void {
    const first = this.attempt;
    const extra = this.extra;
    this.attempt = null;
    this.extra = null;
    first?.abort(reason);
    if (extra !== null) for (const attempt of extra) attempt.abort(reason);
  }

  private forget(attempt: Attempt): void {
    if (this.attempt === attempt) {
      this.attempt = this.extra?.pop() ?? null;
    } else if (this.extra !== null) {
      const at = this.extra.indexOf(attempt);
      if (at >= 0) this.extra.splice(at, 1);
    }
    if (this.extra !== null && this.extra.length === 0) this.extra = null;
  }

  fallbackFailed(error: unknown, how: string): void {
    this.fallbackFailure = `failed and its fallback ${how}`;
    this.error = error;
  }

  timeoutError(): BudgetExceededError {
    const { timeoutMs } = this.def;
    if (timeoutMs !== undefined && this.deadline < this.host.deadline) {
      return new BudgetExceededError([this.name], timeoutMs, 'timeout');
    }
    return new BudgetExceededError([this.name], this.host.budgetMs ?? this.host.scope.budgetMs);
  }
}

function onTimeout(task: TaskRun): void {
  // With graceMs 0 the slot is freed inside settle(), before fail-fast drops the queued siblings.
  task.runtime.scheduler.held(() => task.settle('timeout', task.timeoutError()));
}

function onBackoff(task: TaskRun): void {
  task.runtime.scheduler.held(() => task.retryNow());
}

function onHedge(task: TaskRun): void {
  task.hedge();
}

const EMPTY: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>;
/** The empty `deps` and `dependents` of every task without `after` (never written: call.ts replaces it first). */
const NO_TASKS: TaskRun[] = Object.freeze([]) as unknown as TaskRun[];
