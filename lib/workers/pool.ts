import createDebug from 'debug';
import { performance } from 'node:perf_hooks';
import { Admission, ADMISSION_DEFAULTS, type AdmissionSettings } from '../admission';
import { OverloadedError, WorkerArgumentsError, WorkerCrashedError, type WorkerScriptError } from '../errors';
import { describe } from '../validate';
import { Lane, Scheduler, type Job } from '../scheduler';
import type { Transferable, WorkerStats } from '../types';
import { watchAbort } from './abort-watch';
import { bootstrapSource, LOAD_EXIT_CODE } from './bootstrap';
import { checkArgs } from './clone-check';
import { ScriptErrors } from './errors';
import type { ResolvedWorkerOptions } from './options';
import { classify, startThreads, type ThreadCall, type Threads } from './workerpool-adapter';

const debug = createDebug('express-fanout:workers');

/** Options of one {@link WorkerPool.exec} call. */
export interface WorkerExecOptions {
  /** Name of the task, used in every error message. */
  task: string;
  /**
   * Cancels the call: a queued call leaves the queue without running; a running one terminates its thread (the
   * pool replaces it). The promise rejects with `signal.reason` either way. This is the only clock: the
   * caller's deadline covers queue time as well as run time.
   */
  signal?: AbortSignal;
  /**
   * The time by which the caller gives up (`performance.now()` ms; its signal aborts then): what admission
   * judges. A call whose expected wait for a thread plus its method's service time does not fit before it is
   * shed at once (`OverloadedError`), and a queued call whose turn comes too late to finish is dropped the same
   * way, instead of being cut as a timeout. Without it, only `maxQueueSize` bounds the call's wait.
   */
  deadline?: number;
  /** ArrayBuffers, MessagePorts or web streams inside `args` to move to the thread instead of copying. */
  transfer?: readonly Transferable[];
  /**
   * The request the call belongs to: its arrival (`performance.now()` ms) and its lane id, the order of the IO
   * queue. Under saturation the oldest request's call gets the next thread. Without them the call is ordered
   * as a request arriving now.
   */
  arrival?: number;
  lane?: number;
  /** Called when the call gets its thread (the end of its queue wait); must not throw. */
  onStart?: () => void;
}

/**
 * How long a thread gets to answer a cancellation (its `workerpool` abort listeners) and then to exit on its
 * own before it is killed. workerpool's default (1 s, twice over) keeps a thread stuck in a runaway loop burning
 * a core for 2 s after its task was given up, and the pool a thread short meanwhile; 100 ms is ample for a
 * listener that closes a handle.
 */
const TERMINATE_GRACE_MS = 100;

/**
 * How long a cancelled call that is running may go on before its thread is terminated. Its answer is given up at
 * once (the task reports `timeout` or `aborted` at its deadline); the thread is ended only if the call does not
 * finish within this time. A call cut a few ms before its end would cost a thread start (40-140 ms here, during
 * which the pool is a thread short) and a cold JIT: under a CPU backlog near the budget, calls that start just
 * before their deadline are common, and cutting each one made the pool's throughput collapse.
 */
const CUT_GRACE_MS = 50;

/**
 * The slot of a cancelled running call stays taken until its thread is gone (the pool then starts a fresh one),
 * so that a call handed to workerpool finds a free thread. workerpool reports every thread it ends, but not which
 * call's: the report frees the oldest such slot, and this bound frees one when no report comes (a thread whose
 * abort listeners answered in time is kept). If a report is attributed to the wrong thread (a crash and a
 * cancellation at once), a call may wait a moment inside workerpool for the dying thread: in order, cancellable.
 */
const DYING_SLOT_MS = TERMINATE_GRACE_MS * 3;

/**
 * The drain rate may fall this far below the one the queue was last judged with before the queued calls are
 * judged again (`WorkerPool`'s `#rejudge`).
 */
const REJUDGE_FALL = 0.75;

/**
 * Up to this many waiting calls, the queue is judged again whenever a call ends (a few comparisons each): a call
 * that fell behind because the threads slowed down (CPU contention makes service times vary) is shed while that
 * is still fast, not cut at its deadline. A longer queue is judged only when the drain rate falls.
 */
const REJUDGE_ALWAYS_UP_TO = 32;

/** Internal seams, for tests: the clock (performance ms) and how threads are started. */
export interface WorkerPoolSeams {
  now?: () => number;
  startThreads?: typeof startThreads;
}

/** One `exec()` call, from its submission to its settlement. Its slot is a thread. */
class WorkerCall implements Job {
  nextJob: Job | null = null;
  prevJob: Job | null = null;
  queued = false;
  /** When it got its thread (set by the scheduler), then when the thread began it; `NaN`: not a sample. */
  startedAt?: number;
  /** The promise of `exec()` is settled; the slot may still be held by a thread being terminated. */
  done = false;
  /** Handed to a thread. */
  thread: ThreadCall | null = null;
  unwatch: (() => void) | undefined = undefined;
  /** Cancelled while running: the thread is terminated when this fires, unless the call finishes first. */
  cutTimer: NodeJS.Timeout | null = null;
  dyingTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly pool: WorkerPool,
    readonly lane: Lane,
    readonly method: string,
    readonly args: readonly unknown[],
    readonly options: WorkerExecOptions,
    /** When `exec()` was called, performance ms: the start of its queue wait (CoDel's sojourn). */
    readonly submittedAt: number,
    readonly resolve: (value: unknown) => void,
    readonly reject: (error: unknown) => void,
  ) {}

  /** Service times are kept per method: the thread's work depends on the method, not on the task's name. */
  get name(): string {
    return this.method;
  }

  get deadline(): number | undefined {
    return this.options.deadline;
  }

  start(): void {
    this.options.onStart?.();
    this.pool.dispatch(this);
  }

  /** Admission dropped it from the queue: its turn came too late for it to finish before its deadline. */
  drop(detail: string): void {
    this.pool.shed(this, detail);
  }
}

/**
 * The worker-thread pool of one `fanout()` middleware. Calls wait in the package's own queue (the scheduler of
 * the IO tasks, with one slot per thread and `maxQueueSize` places), ordered by their request's arrival, and
 * are handed to `workerpool` only when a thread is free; cancellation by `AbortSignal`; typed errors for crashed
 * threads and broken scripts. No thread exists before the first call.
 *
 * Admission is the IO queue's ({@link Admission}, with the middleware's `admission` settings): a call that
 * cannot finish by its deadline is shed at once (503), not left to wait for a 504. It reads the threads' drain
 * rate and each method's service time, measured from when a thread begins a call (a thread's start-up is not
 * service time). Before anything is measured only `maxQueueSize` bounds the queue. The queued calls are judged
 * again when a call ends (see {@link REJUDGE_ALWAYS_UP_TO}): a first burst queued blind, or a call that fell
 * behind a slow one, gets a fast 503 for what cannot make it, not a 504.
 */
export class WorkerPool {
  readonly #options: ResolvedWorkerOptions;
  readonly #scheduler: Scheduler;
  readonly #admission: Admission | null;
  readonly #now: () => number;
  readonly #startThreads: typeof startThreads;
  /** The drain rate (calls per ms) the queue was last judged with, or the highest since; `NaN`: not yet. */
  #judgedRate = Number.NaN;
  readonly #errors: ScriptErrors;
  /** The lanes of requests with calls waiting or running, by lane id. */
  readonly #lanes = new Map<number, Lane>();
  /** Calls not yet settled. */
  readonly #calls = new Set<WorkerCall>();
  /** Cancelled running calls given {@link CUT_GRACE_MS} to finish: each still holds its slot. */
  readonly #grace = new Set<WorkerCall>();
  /** Cancelled calls whose thread is being terminated, oldest first: each still holds its slot. */
  readonly #dying: WorkerCall[] = [];
  /**
   * Ids of calls that belong to no request: below every request's id (>= 0), and growing, so that calls
   * submitted in the same ms (equal arrivals) are served in submission order.
   */
  #nextAnonymousLane = Number.MIN_SAFE_INTEGER;
  #threads: Threads | null = null;
  #closed = false;
  #closing: Promise<void> | null = null;
  #broken: WorkerScriptError | null = null;
  /** The methods the script registers, asked once, the first time a call names one it lacks. */
  #methods: Promise<readonly string[] | undefined> | null = null;
  /** Terminations of thread pools given up (broken script), awaited by `close()`. */
  readonly #ending: Promise<void>[] = [];
  #drainWaiters: (() => void)[] = [];
  #terminated = 0;
  #crashed = 0;
  #shed = 0;

  /**
   * Creates no thread: threads wait for the first `exec()`. `admission`: the middleware's settings, or `false`
   * for none (only `maxQueueSize` bounds the queue).
   */
  constructor(
    options: ResolvedWorkerOptions,
    admission: AdmissionSettings | false = ADMISSION_DEFAULTS,
    seams: WorkerPoolSeams = {},
  ) {
    this.#options = options;
    this.#now = seams.now ?? performance.now.bind(performance);
    this.#startThreads = seams.startThreads ?? startThreads;
    this.#admission = admission === false ? null : new Admission({ ...admission });
    this.#scheduler = new Scheduler(options.maxWorkers, Number.MAX_SAFE_INTEGER, options.maxQueueSize, {
      ...(this.#admission ? { admission: this.#admission } : {}),
      now: this.#now,
    });
    this.#errors = new ScriptErrors(options.script);
  }

  /**
   * Runs `method` of the worker script with `args` on a thread. Never throws: every failure is a rejection.
   * - `signal` already aborted: rejects with `signal.reason`, nothing is queued.
   * - `signal` aborted later: a queued call leaves the queue without running; a running one is cancelled,
   *   which terminates its thread (counted in `terminated`); the pool replaces it. Rejects with `signal.reason`.
   * - the method throws: an `Error` (of the same built-in class where there is one) with the worker's `name`,
   *   `message` (the script's path and folder removed) and own properties such as `code`.
   * - the thread exits or crashes (`process.exit`, an uncaught error, `resourceLimits`): `WorkerCrashedError`.
   * - the script fails to load, or registers no methods: `WorkerScriptError`, and every later call rejects
   *   at once with the same error (no respawning). No script configured, or a method the script does not
   *   register: `WorkerScriptError` too (500: a deployment or programming error, not a failed dependency).
   * - `args` that cannot be structured-cloned, or a bad `transfer` list: `TypeError` naming the task, before
   *   anything is queued.
   * - `maxQueueSize` calls wait and no thread is free: `OverloadedError`; after `close()` too.
   * - with a `deadline`, the expected wait for a thread leaves no time for the method's service time:
   *   `OverloadedError` at once; a queued call whose turn comes too late to finish: `OverloadedError` then.
   */
  exec<T = unknown>(method: string, args: readonly unknown[], options: WorkerExecOptions): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const task = options.task;
      const signal = options.signal;
      if (signal?.aborted) return reject(signal.reason);
      if (this.#closed) return reject(new OverloadedError([task], 'the worker pool is closed'));
      if (this.#broken) return reject(this.#broken);
      if (this.#options.script === undefined) return reject(this.#errors.noScript(task));
      if (typeof method !== 'string' || method === '') {
        return reject(
          new TypeError(
            `Expected the method of worker task \`${task}\` to be a name, got ${describe(method)}`,
          ),
        );
      }
      const problem = checkArgs(args, options.transfer);
      if (problem !== undefined) {
        return reject(new WorkerArgumentsError(task, problem));
      }

      const lane = this.#laneOf(options);
      const call = new WorkerCall(
        this,
        lane,
        method,
        args,
        options,
        this.#now(),
        resolve as (value: unknown) => void,
        reject,
      );
      this.#calls.add(call);
      if (this.#scheduler.submit(lane, call) === 'shed') {
        this.#calls.delete(call);
        this.#forgetLane(lane);
        this.#shed++;
        const s = this.#scheduler;
        const occupancy = `(${s.running}/${s.concurrency} threads busy, ${s.queued}/${s.maxQueue} queued)`;
        const detail =
          s.queued >= s.maxQueue
            ? `the worker queue is full ${occupancy}`
            : `the expected wait for a worker thread leaves no time for \`${method}\` ` +
              `(about ${Math.round(this.#admission!.serviceOf(method))} ms of work) in the ` +
              `${Math.max(0, Math.round(options.deadline! - call.submittedAt))} ms left ${occupancy}`;
        return reject(new OverloadedError([task], detail));
      }
      if (signal && !call.done) call.unwatch = watchAbort(signal, () => this.#abort(call, signal.reason));
    });
  }

  /** The scheduler gave `call` a thread: hand it to workerpool. */
  dispatch(call: WorkerCall): void {
    let thread: ThreadCall;
    // Service time runs from when the thread begins the call: a thread's start-up (40-140 ms) is not the method's.
    const begun = (): void => {
      if (call.startedAt === call.startedAt) call.startedAt = this.#now();
    };
    try {
      thread = this.#ensureThreads().run(call.method, call.args, call.options.transfer, begun);
    } catch (error) {
      // Not from inside the scheduler's drain: settle on the next microtask.
      debug('handing %s to a thread threw: %O', call.options.task, error);
      queueMicrotask(() => this.#finish(call, false, error));
      return;
    }
    call.thread = thread;
    thread.result.then(
      (value) => this.#finish(call, true, value),
      (error: unknown) => this.#finish(call, false, error),
    );
  }

  /** Threads busy and idle and calls waiting (zeros before the first call), plus the two counters. */
  stats(): WorkerStats {
    const threads = this.#threads?.threads();
    return {
      busy: this.#scheduler.running,
      idle: threads?.idle ?? 0,
      pending: this.#scheduler.queued,
      shed: this.#shed,
      terminated: this.#terminated,
      crashed: this.#crashed,
    };
  }

  /**
   * Ends a queued call that cannot finish before its deadline (admission dropped it, or `#rejudge`):
   * `OverloadedError`, 503, where waiting on would have been a 504.
   */
  shed(call: WorkerCall, detail: string): void {
    if (call.done) return;
    this.#shed++;
    this.#scheduler.cancel(call.lane, call);
    this.#forgetLane(call.lane);
    this.#settle(call);
    call.reject(new OverloadedError([call.options.task], `the worker call left the queue: ${detail}`));
  }

  /** Resolves once no call is queued or running (the threads stay up). */
  drained(): Promise<void> {
    if (this.#calls.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Rejects every queued call with an `OverloadedError` (and a running one too: its thread is terminated),
   * terminates the threads and resolves once they have exited, so the process can exit. Later calls reject
   * at once. Idempotent.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#dropQueued((task) => new OverloadedError([task], 'the worker pool is closed'));
    this.#endGraces();
    for (const call of this.#dying.splice(0)) this.#releaseDying(call);
    const threads = this.#threads;
    this.#threads = null;
    if (threads) this.#ending.push(threads.terminate());
    this.#closing = Promise.all(this.#ending).then(() => undefined);
    return this.#closing;
  }

  #ensureThreads(): Threads {
    if (this.#threads) return this.#threads;
    const o = this.#options;
    debug('starting a pool of up to %d threads for %s', o.maxWorkers, this.#errors.name);
    this.#threads = this.#startThreads(bootstrapSource(o.script!), {
      maxWorkers: o.maxWorkers,
      minWorkers: o.minWorkers,
      workerData: o.workerData,
      resourceLimits: o.resourceLimits,
      execArgv: o.execArgv,
      terminateGraceMs: TERMINATE_GRACE_MS,
      onThreadGone: () => queueMicrotask(() => this.#threadGone()),
    });
    return this.#threads;
  }

  #laneOf(options: WorkerExecOptions): Lane {
    if (options.lane === undefined)
      return new Lane(options.arrival ?? this.#now(), this.#nextAnonymousLane++);
    let lane = this.#lanes.get(options.lane);
    if (lane === undefined) {
      lane = new Lane(options.arrival ?? this.#now(), options.lane);
      this.#lanes.set(options.lane, lane);
    }
    return lane;
  }

  #forgetLane(lane: Lane): void {
    if (lane.running === 0 && lane.waiting === 0 && this.#lanes.get(lane.id) === lane)
      this.#lanes.delete(lane.id);
  }

  /** The call's signal aborted. */
  #abort(call: WorkerCall, reason: unknown): void {
    if (call.done) return;
    if (call.queued) {
      this.#scheduler.cancel(call.lane, call);
      this.#forgetLane(call.lane);
    } else if (call.thread?.started) {
      // Running: it keeps its thread and slot for a short grace, then its thread is terminated.
      call.cutTimer = setTimeout(() => this.#cut(call), CUT_GRACE_MS);
      call.cutTimer.unref();
      this.#grace.add(call);
    } else if (call.thread) {
      // Handed to a thread that is still starting: cancelled at once, so it never runs.
      this.#cut(call);
    } else {
      // Handing it to a thread threw; its rejection, due on the next microtask, will find it settled.
      this.#release(call);
    }
    this.#settle(call);
    call.reject(reason);
  }

  /** The grace of a cancelled running call is over: workerpool terminates its thread; the slot stays taken until it is gone. */
  #cut(call: WorkerCall): void {
    call.cutTimer = null;
    this.#grace.delete(call);
    this.#terminated++;
    call.dyingTimer = setTimeout(() => this.#releaseDying(call), DYING_SLOT_MS);
    call.dyingTimer.unref();
    this.#dying.push(call);
    call.thread!.cancel();
  }

  /** Ends the graces of cancelled running calls at once (the threads are being terminated anyway). */
  #endGraces(): void {
    for (const call of this.#grace) {
      clearTimeout(call.cutTimer!);
      call.cutTimer = null;
      this.#terminated++;
      this.#release(call);
    }
    this.#grace.clear();
  }

  /** workerpool reported a thread gone: the oldest cancelled call's slot is free. */
  #threadGone(): void {
    const call = this.#dying.shift();
    if (call) this.#releaseDying(call);
  }

  #releaseDying(call: WorkerCall): void {
    if (call.dyingTimer === null) return;
    clearTimeout(call.dyingTimer);
    call.dyingTimer = null;
    const at = this.#dying.indexOf(call);
    if (at >= 0) this.#dying.splice(at, 1);
    this.#release(call);
  }

  /** Frees the call's thread; `sample`: its time on the thread is a service-time sample (unless `NaN`). */
  #release(call: WorkerCall, sample = false): void {
    if (sample) this.#scheduler.release(call.lane, call);
    else this.#scheduler.release(call.lane);
    this.#forgetLane(call.lane);
  }

  /** The call left the pool's books: no listener, no entry. */
  #settle(call: WorkerCall): void {
    call.done = true;
    call.unwatch?.();
    call.unwatch = undefined;
    this.#calls.delete(call);
    if (this.#calls.size === 0 && this.#drainWaiters.length > 0) {
      const waiters = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** A thread answered (or failed) a call it was handed. */
  #finish(call: WorkerCall, ok: boolean, valueOrError: unknown): void {
    if (call.done) {
      // Cancelled, and it finished within its grace: the thread is kept. Else its slot is released when its
      // thread is gone.
      if (call.cutTimer === null) return;
      clearTimeout(call.cutTimer);
      call.cutTimer = null;
      this.#grace.delete(call);
      this.#release(call);
      return;
    }
    this.#settle(call);
    if (!ok && this.#threads && classify(valueOrError, call.method).kind === 'unknownMethod') {
      // A method the script lacks: the error says "did you mean", from the names the script registers. The call
      // keeps its slot meanwhile, so the thread that just answered is free for workerpool's `methods` call.
      void this.#methodNames().then((names) => {
        call.reject(this.#errors.unknownMethod(call.options.task, call.method, names));
        this.#release(call);
      });
      return;
    }
    // The outcome first: a broken script must drop the queued calls before the freed slot could start one.
    if (ok) call.resolve(valueOrError);
    else call.reject(this.#failure(valueOrError, call.options.task, call.method));
    // A failure may be fast (a thrown error) or cut short (a crash): only a result is a service-time sample.
    if (!ok) call.startedAt = Number.NaN;
    this.#release(call, true);
    this.#rejudge();
  }

  /**
   * Judges every queued call again against the drain rate measured now: one whose expected wait (the calls
   * before it, at that rate) leaves less than its method's service time before its deadline is shed now, not
   * cut as a timeout later. O(queued): after every call while the queue is short, else only when the rate is
   * first known or has fallen by a quarter since the last judgement; in between, admission at submission and
   * at dequeue hold. The order is the submission order, close to the scheduler's (by request arrival); the
   * estimate needs no more.
   */
  #rejudge(): void {
    const admission = this.#admission;
    const scheduler = this.#scheduler;
    if (admission === null || scheduler.queued === 0) return;
    const rate = admission.drainPerMs(scheduler.limit);
    if (!(rate > 0)) return;
    const fell = !(rate >= REJUDGE_FALL * this.#judgedRate);
    if (fell || rate > this.#judgedRate) this.#judgedRate = rate;
    if (!fell && scheduler.queued > REJUDGE_ALWAYS_UP_TO) return;
    const now = this.#now();
    let ahead = 0;
    for (const call of [...this.#calls]) {
      if (!call.queued) continue;
      const deadline = call.deadline;
      const left = deadline === undefined ? Number.POSITIVE_INFINITY : deadline - now;
      const wait = admission.expectedWaitMs(ahead, scheduler.limit);
      if (!admission.canFinish(left - wait, call.method)) {
        this.shed(
          call,
          `it cannot finish in time, ${Math.round(wait)} ms expected wait for a thread, about ` +
            `${Math.round(admission.serviceOf(call.method))} ms of work, ${Math.round(left)} ms left ` +
            `(${scheduler.running}/${scheduler.concurrency} threads busy, ${scheduler.queued}/${scheduler.maxQueue} queued)`,
        );
      } else ahead++;
    }
  }

  /** The script's method names (workerpool's built-in `methods`, less its own), or `undefined` if unknown. */
  #methodNames(): Promise<readonly string[] | undefined> {
    if (this.#methods) return this.#methods;
    let asked: Promise<unknown>;
    try {
      asked = this.#threads!.run('methods', [], undefined).result;
    } catch {
      asked = Promise.resolve(undefined);
    }
    this.#methods = asked.then(
      (names) =>
        Array.isArray(names)
          ? names.filter((n): n is string => typeof n === 'string' && n !== 'methods' && n !== 'run')
          : undefined,
      () => undefined,
    );
    return this.#methods;
  }

  /** Rejects every queued call with `error(task)`. */
  #dropQueued(error: (task: string) => unknown): void {
    for (const call of [...this.#calls]) {
      if (!call.queued) continue;
      this.#scheduler.cancel(call.lane, call);
      this.#forgetLane(call.lane);
      this.#settle(call);
      call.reject(error(call.options.task));
    }
  }

  /** Turns what a thread rejected a call with into this module's error. */
  #failure(error: unknown, task: string, method: string): unknown {
    const failure = classify(error, method);
    const errors = this.#errors;
    if (failure.kind === 'thrown' && errors.isLoadFailure(failure.error)) {
      return this.#markBroken(errors.loadError(failure.error));
    }
    const cut = failure.kind === 'shutdown' || failure.kind === 'exited';
    if (this.#closed && cut) return new OverloadedError([task], 'the worker pool closed while it ran');
    if (this.#broken && cut) return this.#broken;
    switch (failure.kind) {
      case 'exited': {
        if (failure.exitCode === LOAD_EXIT_CODE) return this.#markBroken(errors.exitedWhileLoading());
        this.#crashed++;
        const cause =
          failure.cause !== undefined
            ? errors.local(failure.cause)
            : new Error(`the worker thread exited with code ${failure.exitCode ?? 'unknown'}`);
        debug('task %s: worker thread crashed: %O', task, cause);
        return new WorkerCrashedError(task, cause);
      }
      case 'shutdown':
        return new OverloadedError([task], 'the worker pool closed while it ran');
      case 'unknownMethod':
        return errors.unknownMethod(task, method);
      case 'thrown':
        return errors.local(failure.error);
    }
  }

  /** The pool's script is unusable: fail this call and every later one with `error`; end the threads. */
  #markBroken(error: WorkerScriptError): WorkerScriptError {
    if (this.#broken) return this.#broken;
    this.#broken = error;
    debug('%s', error.message);
    this.#dropQueued(() => error);
    this.#endGraces();
    for (const call of this.#dying.splice(0)) this.#releaseDying(call);
    const threads = this.#threads;
    this.#threads = null;
    // Running calls are rejected by the termination, and mapped to `error`.
    if (threads) this.#ending.push(threads.terminate());
    return error;
  }
}
