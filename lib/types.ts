import type { FanoutError } from './errors';

/**
 * What `transfer` may list: moved to the worker thread instead of copied. Declared here rather than imported
 * from `node:worker_threads`, whose `Transferable` is gone from `@types/node` 26: the package's
 * declarations must compile against every `@types/node` a user may have, with `skipLibCheck: false`.
 */
export type Transferable =
  | ArrayBuffer
  | import('node:worker_threads').MessagePort
  | import('node:stream/web').ReadableStream
  | import('node:stream/web').WritableStream
  | import('node:stream/web').TransformStream;

/** `worker_threads` resource limits of each thread, in MB (declared here for the same reason). */
export interface WorkerResourceLimits {
  maxOldGenerationSizeMb?: number;
  maxYoungGenerationSizeMb?: number;
  codeRangeSizeMb?: number;
  stackSizeMb?: number;
}

/**
 * Options of {@link fanout}. All are optional; an invalid value throws a `TypeError` naming the option when
 * `fanout()` is called, never at request time.
 */
export interface FanoutOptions {
  /**
   * Per-request latency budget in ms, counted from the moment the middleware sees the request. It covers time
   * spent waiting in the queue as well as running. Integer, 1 to 2147483647. One route gets its own budget,
   * longer or shorter, with `budget(ms)` before its handler. A second `fanout()` on the same request (on a
   * router below the app's) only tightens: its deadline never falls after the first one's (the `express-fanout`
   * debug namespace logs the cap).
   * @default 1000
   */
  budgetMs?: number;
  /**
   * The largest budget a client may ask for through {@link FanoutOptions.budgetHeader}; a larger header value
   * is cut to it. Integer >= 1.
   * @default budgetMs
   */
  maxBudgetMs?: number;
  /**
   * Request header carrying the caller's remaining budget in integer ms (also written by `ctx.headers()` for
   * outbound calls). A malformed, zero or negative value is ignored. `false` ignores the header.
   * @default 'x-request-budget-ms'
   */
  budgetHeader?: string | false;
  /**
   * Process-wide cap on tasks running at once, all requests together: an integer >= 1 (fixed, one limit for
   * every task), `'adaptive'`, or `{ adaptive: { min, max, … } }`. Adaptive, each dependency (a task's
   * `dependency`, else its name) has a bulkhead: its own limit, found from its tasks' latency (a gradient
   * controller, as Netflix's Gradient2 and Envoy's), and its own admission. A limit grows while latency stays
   * at its no-load level and shrinks when the dependency starts queueing (latency grows with every call over
   * its capacity), so the queue stays here, where the budget can shed it, not inside the dependency; the event
   * loop's own delay is taken out of the latency, so a busy loop does not shrink it. `max` stays the
   * process-wide ceiling. `stats().limit` shows their sum, `stats().dependencies` each.
   * @default 'adaptive' (min 4, max 4096, starting at 32)
   */
  concurrency?: number | 'adaptive' | { adaptive: AdaptiveConcurrency | true };
  /**
   * Cap on one request's tasks running at once. Integer >= 1.
   * @default 16
   */
  perRequest?: number;
  /**
   * Tasks allowed to wait for a slot, process-wide. A task that finds the queue full is shed at once
   * (`OverloadedError`, 503). Integer >= 0.
   * @default 1024
   */
  maxQueue?: number;
  /**
   * Deadline-aware admission: a task whose expected wait (tasks queued ahead / the measured drain rate) plus
   * its expected run time exceeds its remaining budget is shed at once (503) instead of queued to time out
   * (504); a queued task whose turn comes too late to finish is dropped (503), not started. Under a sustained
   * overload (CoDel: every task waited over `targetMs` for `intervalMs`) the wait admitted is capped at
   * `intervalMs` and, with `lifo`, the newest requests are served first; both end when the queue drains.
   * Worker calls are admitted by the same rules, by a controller of their own (the threads' drain rate, each
   * worker method's service time). `false`: only `maxQueue` (and `workers.maxQueueSize`) bounds the queues.
   * @default { targetMs: 5, intervalMs: 100, lifo: false }
   */
  admission?: AdmissionOptions | false;
  /**
   * The process's own door: when the event loop itself is the queue, new requests are shed at once (503
   * `OverloadedError` with `Retry-After`, before anything per-request is built), but only while the time they
   * would spend in the process breaks their budget. It judges requests only while the loop is hot (its delay
   * stayed above `targetMs` for `intervalMs`; it cools after `intervalMs` below it) and busy (utilisation at
   * least `utilization`), and for a second after a shed. It sheds a request when more requests are in flight than the recent best throughput times the no-load latency
   * says fit (go-zero's check) and Little's law says its wait would break its budget. A surge the loop still
   * answers within the budget is never shed. `stats().eventLoop` shows it. `false`: no door (the event-loop
   * monitor is not started for it).
   * @default { targetMs: 10, intervalMs: 50, utilization: 0.9 }
   */
  eventLoop?: EventLoopOptions | false;
  /**
   * How long an aborted task that ignores its signal keeps its slot before it is written off
   * (`stats().abandoned`) and the slot is freed. Integer >= 0.
   * @default 1000
   */
  graceMs?: number;
  /**
   * Add a `Server-Timing` header with one entry per task and a `total`: `db;dur=201.3;desc="queued 21.2 ms"`,
   * the task's whole time, the part of it spent waiting for a slot or a thread, and its outcome where not
   * plain success (`api;dur=150;desc="fallback; queued 3.1 ms"`). At most 64 entries and 4,096 bytes, the
   * app's own entries included. `{ include(name) }` chooses the tasks shown (enabled, whatever `NODE_ENV`).
   * @default true unless NODE_ENV=production
   */
  serverTiming?: boolean | ServerTimingOptions;
  /**
   * The worker-thread pool for `req.fanout.worker()`, or `false` for none. The pool is created on first use.
   * @default {} (a pool with no script: `worker()` then fails with a clear error)
   */
  workers?: WorkerOptions | false;
  /**
   * How long after the deadline an asynchronous fallback (one that returns a promise, such as a cache read)
   * may still settle: all the time a fallback used at the deadline gets, and what one used earlier gets on top
   * of the budget left. A response whose tasks fall back at the deadline leaves by `budgetMs + fallbackMs`.
   * Integer >= 0.
   * @default 10
   */
  fallbackMs?: number;
  /**
   * Called once for every task when it settles (after `Server-Timing` and `stats()` are updated). Must not
   * throw; an exception it throws is swallowed.
   */
  onTask?: (event: TaskEvent) => void;
  /**
   * Retries allowed per task name, for this middleware (Finagle's retry budget): every first attempt of a task
   * with `retries` deposits `ratio` of a token, every retry takes one, both over the last `windowMs`; on top,
   * a reserve of `minPerSecond` retries a second, available from the first request. When it is spent a failed
   * attempt's failure stands (`stats().retriesDenied`): a failing dependency sees about `1 + ratio` times its
   * normal call rate (plus the reserve), never `1 + retries` times.
   * @default { ratio: 0.2, minPerSecond: 10, windowMs: 10000 }
   */
  retryBudget?: BudgetOptions;
  /**
   * Hedges allowed per task name, shaped like {@link FanoutOptions.retryBudget}: hedging cannot amplify an
   * overload.
   * @default { ratio: 0.05, minPerSecond: 1, windowMs: 10000 }
   */
  hedgeBudget?: BudgetOptions;
  /**
   * Taken off the remaining budget that `ctx.headers()`, `ctx.fetch()` and `req.fanout.headers()` send
   * downstream, so that a callee's deadline falls before its caller's: the callee counts its budget from when
   * it sees the request, so the margin must cover the way back (the answer's transit) and the time to use it.
   * An integer of ms, or `{ ms, ratio }`: `ms` plus `ratio` of the remaining time. On top of it, `ctx.fetch()`
   * (and `headers(url)`) adds the transit learned for the callee's origin: the p99 of its recent round trips
   * minus the work time the callee reported (its `x-fanout-work-ms` header, or its `Server-Timing` `total`),
   * so the default nests deadlines at any network delay once the first answer came back; a callee that
   * reports nothing gets this fixed part only (`stats().transit` shows what was learned).
   * @default { ms: 5, ratio: 0.05 } (5 ms plus 5 % of the remaining time, plus the learned transit)
   */
  propagationMarginMs?: number | { ms?: number; ratio?: number };
  /**
   * Named limits a task joins with its option `limit: 'payments'`: at most `concurrency` such tasks run at once
   * in every process sharing the `store` (the whole fleet with {@link RedisLimitStore}; this middleware alone
   * with the default in-memory store). Waiting for a permit counts against the task's budget.
   * @default {} (none)
   */
  limits?: Record<string, LimitOptions>;
}

/** One entry of the `limits` option. */
export interface LimitOptions {
  /** Tasks of this limit running at once in every process sharing the store. Integer >= 1. */
  concurrency: number;
  /**
   * Where permits are counted: `new RedisLimitStore({ client })` for a fleet, or the default in-memory store
   * (this middleware only). A lease expires at the task's deadline + `graceMs`, so a crashed process frees its
   * permits by then.
   * @default an in-memory store
   */
  store?: LimitStore;
}

/**
 * Where a fleet-wide limit counts its permits. `acquire` takes a permit named `leaseId` if fewer than `limit`
 * are held, for at most `ttlMs` (then it lapses on its own); `release` gives it back.
 */
export interface LimitStore {
  acquire(name: string, limit: number, leaseId: string, ttlMs: number): Promise<boolean>;
  release(name: string, leaseId: string): Promise<void>;
}

/** `retryBudget` and `hedgeBudget`: each field defaults on its own. */
export interface BudgetOptions {
  /** Tokens per first attempt, 0 to 1000. */
  ratio?: number;
  /** The reserve: tokens a second whatever the deposits, 0 to 1e6. */
  minPerSecond?: number;
  /** How long deposits and withdrawals count, ms. Integer from 10 to 3600000. */
  windowMs?: number;
}

/** The object form of the task option `retries`. */
export interface RetryOptions {
  /** Retries at most after the first attempt. Integer from 0 to 100. */
  max: number;
  /**
   * Base of the full-jitter exponential backoff: retry `n` (0-based) waits a random time in
   * `[0, backoffMs × 2^n)`. Integer >= 0.
   * @default 10
   */
  backoffMs?: number;
  /** Whether a failed attempt's error is worth a retry (a 4xx is not). Throwing counts as `false`. @default every error */
  retryOn?: (error: unknown) => boolean;
}

/** `concurrency: { adaptive: { … } }`: bounds and tuning of the adaptive limit. */
export interface AdaptiveConcurrency {
  /** Lowest limit. Integer >= 1. @default 4 */
  min?: number;
  /** Highest limit of a dependency, and the process-wide ceiling. Integer >= min. @default 4096 */
  max?: number;
  /** Limit before any latency was measured. Integer in [min, max]. @default 32 */
  initial?: number;
  /** Latency over the no-load level tolerated before the limit shrinks, as a ratio, 1 to 10. @default 1 */
  tolerance?: number;
  /** Absolute latency tolerated on top of it, ms (timer and event-loop jitter). Integer >= 0. @default 5 */
  slackMs?: number;
  /** Shortest window between two adjustments, ms (also at least twice the no-load latency). @default 50 */
  windowMs?: number;
  /** Fewest latency samples in a window. Integer >= 1. @default 10 */
  minSamples?: number;
  /** The no-load latency is the lowest of the last two epochs of this length, ms. @default 60000 */
  relearnMs?: number;
}

/** The `admission` option. */
export interface AdmissionOptions {
  /** CoDel's target queue sojourn, ms. Integer >= 1. @default 5 */
  targetMs?: number;
  /** CoDel's interval, ms; also the longest wait admitted during a sustained overload. @default 100 */
  intervalMs?: number;
  /** Serve the newest requests first during a sustained overload (adaptive LIFO). @default false */
  lifo?: boolean;
}

/** The `eventLoop` option: when the door judges requests. */
export interface EventLoopOptions {
  /** The loop's delay (how late a 10 ms timer fires, smoothed over ~100 ms) that counts as a queue, ms. Integer >= 1. @default 10 */
  targetMs?: number;
  /** How long the delay must stay above `targetMs` before the door judges, and below it before it stops, ms (the delay is already smoothed over ~100 ms). Integer >= 1. @default 50 */
  intervalMs?: number;
  /** Event-loop utilisation (0 to 1) from which the loop counts as busy; below it the door sheds nothing. @default 0.9 */
  utilization?: number;
}

/** The `workers` option. */
export interface WorkerOptions {
  /** Absolute path (or `file:` URL) of a worker script that registers named methods with `workerpool.worker({...})`. */
  script?: string | URL;
  /** Threads at most. Integer >= 1. @default max(2, os.availableParallelism()) */
  maxWorkers?: number;
  /** Threads kept alive when idle. Integer >= 0, <= maxWorkers. @default 0 */
  minWorkers?: number;
  /**
   * Worker calls allowed to wait for a thread; beyond it a call is shed with 503. Integer >= 0.
   *
   * Admission (the middleware's `admission` option, as for IO tasks) already bounds the wait by time: a call
   * whose expected wait for a thread plus its method's service time does not fit in what is left of its budget
   * is shed at once, and a standing queue is capped at `admission.intervalMs` of wait. Measured in a simulation
   * of 3x overload (one thread, 10 ms calls, 250 ms budget) the queue peaked at 23 calls, then held near 10.
   * So this bound only matters before the pool has measured a call (a first burst; it is judged again once the
   * first call ends) and with `admission: false`. It stays large so that a burst of quick calls that all fit
   * is not shed (1000 calls of 1 ms fit in a 1 s budget on one thread); lower it to bound the memory that
   * waiting calls' arguments hold.
   * @default 1024
   */
  maxQueueSize?: number;
  /** `worker_threads` resource limits of each thread (heap size, stack). A thread exceeding them crashes and is replaced. */
  resourceLimits?: WorkerResourceLimits;
  /**
   * Node options of each thread, e.g. `['--require', 'tsx/cjs']` to run a TypeScript worker script from
   * the sources in development. Ship a compiled script in production. @default the process's own `execArgv`
   */
  execArgv?: string[];
  /**
   * A value every thread receives as `require('node:worker_threads').workerData` (`import { workerData } from
   * 'node:worker_threads'` in an ES module): a database path, a config. Threads cannot see the parent's
   * variables. Must be structured-cloneable (checked at `fanout()` time). @default undefined
   */
  workerData?: unknown;
}

/** How a task ended. */
export type TaskStatus = 'fulfilled' | 'rejected' | 'timeout' | 'aborted' | 'shed' | 'skipped';

/** `serverTiming: { include }`. */
export interface ServerTimingOptions {
  /**
   * Whether the task's entry is written (`total` always is). Called once per task per response; a throw
   * counts as `false`.
   * @default every task
   */
  include?: (name: string) => boolean;
}

/** What `onTask` receives. */
export interface TaskEvent {
  name: string;
  status: TaskStatus;
  /** Whether the task's `fallback` supplied its value. */
  fallback: boolean;
  /**
   * Time from the task being submitted (dependencies resolved) to its final value, queue wait and an
   * asynchronous fallback's time included.
   */
  ms: number;
  /** How long an asynchronous fallback took, when one was awaited. */
  fallbackMs?: number;
  error?: unknown;
  /**
   * Attempts submitted: 1, plus its retries and hedges (a first attempt shed, dropped or expired in the queue
   * counts too); 0 for a task that was never submitted (skipped, coalesced, or ended before its turn).
   */
  attempts: number;
  /** Its outcome came from another task's execution with the same `key`. */
  coalesced?: true;
  /**
   * How long it waited for a slot (or, for a `worker()` task, a thread) before its first attempt ran, ms;
   * absent for a task that never got one (shed, skipped, timed out in the queue, coalesced).
   */
  queuedMs?: number;
  /** Retries and hedges among its attempts, when there were any. */
  retried?: number;
  hedged?: number;
}

/**
 * A task as an observer sees it while it runs (see {@link FanoutMiddleware.observe}): read-only, and only
 * meaningful until the probe's `end`.
 */
export interface ObservedTask {
  readonly name: string;
  /** Submission (dependencies resolved), `performance.now()` ms. */
  readonly submittedAt: number;
  /** The task's deadline, `performance.now()` ms. */
  readonly deadline: number;
}

/**
 * A per-task probe returned by {@link FanoutObserver.task}: `run` wraps every call of the task's function
 * (each attempt), synchronously, so the function and what it awaits run inside whatever `run` sets up (an
 * OpenTelemetry context, for instance); `end` is called once, when the task's outcome is final.
 */
export interface TaskProbe {
  run<T>(attempt: number, fn: () => T): T;
  end(event: TaskEvent): void;
}

/**
 * An observer of one `fanout()` middleware's tasks (`fo.observe(observer)`), what the
 * `express-fanout/prometheus` and `express-fanout/otel` exports are built on. Both hooks are optional; a
 * middleware with no observer pays nothing for them. A throw from a hook is caught and logged under
 * `DEBUG=express-fanout` (a throw from `run` before it calls `fn` fails that attempt).
 */
export interface FanoutObserver {
  /** Every task's final outcome, as `onTask` gets it (after it). */
  settled?(event: TaskEvent): void;
  /** Called when a task is created (in the caller's async context: `all()`'s); may return a probe. */
  task?(task: ObservedTask): TaskProbe | undefined;
}

/**
 * Methods of the worker script, for type-checked `req.fanout.worker()`. Augment it:
 * ```ts
 * declare module 'express-fanout' {
 *   interface WorkerMethods { fib(n: number): number }
 * }
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface WorkerMethods {}

/** `keyof WorkerMethods` once augmented, any string otherwise. */
export type WorkerMethodName = keyof WorkerMethods extends never ? string : keyof WorkerMethods & string;
export type WorkerArgs<M extends string> = M extends keyof WorkerMethods
  ? WorkerMethods[M] extends (...args: infer A) => unknown
    ? A
    : unknown[]
  : unknown[];
export type WorkerResult<M extends string> = M extends keyof WorkerMethods
  ? WorkerMethods[M] extends (...args: never[]) => infer R
    ? Awaited<R>
    : unknown
  : unknown;

/** What every task function receives. */
export interface TaskContext<R = Record<string, unknown>> {
  /** Aborted on the task's timeout, the request deadline, client disconnect or a required sibling's failure. */
  readonly signal: AbortSignal;
  /** The task's deadline in epoch ms (the earliest of the request budget, the call budget and `timeoutMs`). */
  readonly deadline: number;
  /** Milliseconds left until {@link TaskContext.deadline}, never negative. */
  remainingMs(): number;
  /** Values of the tasks named in `after`. */
  readonly results: R;
  /** 0 for the first attempt, then 1, 2 … for each retry or hedge. Each attempt has its own `signal`. */
  readonly attempt: number;
  /**
   * The budget header carrying the remaining ms minus the propagation margin (`propagationMarginMs`), to pass
   * on to services that use this package too: their deadline then falls before this task's. With the `url`
   * (or origin) of the call, the margin adds the transit `ctx.fetch()` learned for that origin, as `ctx.fetch()`
   * itself does; without it, the fixed part only.
   */
  headers(url?: string | URL): Record<string, string>;
  /**
   * The global `fetch` with this attempt's `signal` and the budget header set (merged into `init.headers`).
   * The margin taken off the budget adds the transit learned for the URL's origin (see
   * {@link FanoutOptions.propagationMarginMs}); an `init.signal` of your own aborts the call too, and is let go
   * of (no listener stays on it) when the attempt ends: the body stays readable until then.
   * Resolves with the `Response` for a status below 500 (a 404 is the caller's business; the body is not
   * read). A callee's 504 rejects with a {@link DownstreamError} counted as a timeout, its 503 as a shed (a
   * retry waits for its `Retry-After`), its 499 as a failure never retried, any other 5xx as a failure.
   */
  fetch(url: string | URL, init?: RequestInit): Promise<Response>;
  /**
   * Runs `method` of the worker script on the worker-thread pool, as part of this task (same signal and
   * deadline): `db: (ctx) => ctx.worker('query', [sql])`.
   */
  worker<M extends WorkerMethodName>(
    method: M,
    args?: WorkerArgs<M>,
    options?: { transfer?: readonly Transferable[] },
  ): Promise<WorkerResult<M>>;
}

/** A task function. `R` is the type of `ctx.results`, the values of the tasks named in `after`. */
export type TaskFn<T = unknown, R = Record<string, unknown>> = (ctx: TaskContext<R>) => T | PromiseLike<T>;

/** A task with options. */
export interface TaskSpec<T = unknown> {
  /**
   * The task. A method, not a property, so that a spec whose `run` takes typed `ctx.results` (see
   * {@link CheckedTasks}) still satisfies {@link Tasks}: method parameters are compared bivariantly.
   */
  run(ctx: TaskContext): T | PromiseLike<T>;
  /** The task's own limit in ms, counted from when it is ready to run (queue wait included), inside the budget. */
  timeoutMs?: number;
  /**
   * Makes the task optional: the value used when it fails, times out, is aborted or is shed, or a function
   * of the error returning it. A promise (or a function returning one, such as a cache read) is awaited
   * until the deadline plus `fallbackMs`; if it rejects or runs out of time the task
   * fails as if it had no fallback.
   */
  fallback?: T | PromiseLike<T> | ((error: unknown) => T | PromiseLike<T>);
  /**
   * Names of tasks of the same call whose values it needs (in `ctx.results`); it starts once they resolve.
   * In an object literal passed to `all()`, `settle()` or `gather()` only the names of sibling tasks compile,
   * and `ctx.results` is typed from them (see {@link CheckedTasks}).
   */
  after?: readonly string[];
  /**
   * Extra attempts after a failed one (it rejected, or ran past `attemptTimeoutMs`), after a full-jitter
   * exponential backoff. A retry waits for a slot like any task (it counts against `concurrency` and
   * `perRequest`), is made only while the time left holds the backoff and an attempt of the name's recent
   * median (5 ms when unknown), and only while the middleware's `retryBudget` has a token; never after the
   * deadline, the client leaving or an abort. The task's outcome is its last attempt's.
   * @default 0
   */
  retries?: number | RetryOptions;
  /**
   * Limit of one attempt in ms, counted from when it gets its slot: an attempt over it is aborted (keeping
   * its slot until it settles or `graceMs`) and counts as a failure, retried if `retries` allows.
   * Integer >= 1. @default none (only `timeoutMs` and the budget)
   */
  attemptTimeoutMs?: number;
  /**
   * Start another attempt if the running one has not settled after this long: ms, or `'p90' | 'p95' |
   * 'p99'` of the name's recent latency (from 20 samples on; no hedge before). A hedge needs a free slot now
   * and nobody waiting (it never queues, never sheds anyone) and a token of `hedgeBudget`. The first attempt
   * to fulfil wins; the others are aborted.
   * @default none
   */
  hedgeMs?: number | 'p90' | 'p95' | 'p99';
  /** Hedges at most for the task (each one `hedgeMs` after the previous). Integer 1 to 10. @default 1 */
  hedges?: number;
  /**
   * Single-flight: tasks with an equal key in flight in the same middleware, from any request, share one
   * execution (the first one's, in its request's slot). Each keeps its own deadline, timeout and fallback;
   * the execution is aborted only when every one has left. Not a cache: nothing is kept after it settles.
   */
  key?: string;
  /**
   * Name of a fleet-wide limit (middleware option `limits`) whose permit this task also needs: each attempt
   * waits for one after getting its slot (the wait counts against the budget) and gives it back when it
   * settles.
   */
  limit?: string;
  /**
   * The dependency this task calls, for its bulkhead: with the adaptive `concurrency` (the default), each
   * dependency has its own adaptive limit and admission, so a saturated one queues and sheds only its own
   * tasks. Tasks naming the same dependency share one (`'inventory'` for `getStock` and `reserve`). A non-empty
   * string of at most 128 characters. At most 256 dependencies are tracked per middleware; later ones share one
   * bulkhead, reported as `'(other)'`. With a fixed `concurrency`, every task shares the one limit.
   * @default the task's name
   */
  dependency?: string;
  /**
   * For a task with a `fallback`: when the name's recent p95 (from 20 samples on) exceeds the time left,
   * take the fallback at once without a slot (status `'skipped'`).
   * @default true
   */
  skipWhenLate?: boolean;
}

export type Task<T = unknown> = TaskFn<T> | TaskSpec<T>;
export type Tasks = Record<string, Task>;

/**
 * The tasks argument of `all()`, `settle()` and `gather()`: the tasks `T`, checked against the dependency
 * graph `G` that TypeScript reads from the same object literal, with no annotation at the call site.
 * - `after` compiles only with names of sibling tasks, never the task's own name: `after: ['usr']` is
 *   `Type '"usr"' is not assignable to type '"user" | "flags"'. Did you mean '"user"'?`
 * - `run` receives `ctx.results` typed as exactly the values of the tasks named in `after` (a fallback's
 *   type included); reading any other name does not compile.
 *
 * The limits: TypeScript types `run`'s `ctx` before it has checked the other functions of the object that
 * take a parameter, so a dependency whose own function or `run` takes an unannotated `ctx` is `unknown` in
 * `ctx.results` (its name is still checked); one that takes no parameter, or an annotated one
 * (`({ signal }: TaskContext) => …`), is typed exactly. In `gather((req) => tasks)` the names are checked
 * but `ctx.results` is a plain record. Objects built at run time (`Record<string, Task>`, `after` as a
 * `string[]`) are checked at run time only, as in JavaScript.
 */
export type CheckedTasks<T extends Tasks, G> = ([UnknownNames<G>] extends [never] ? T : Tasks) &
  TaskGraph<G> &
  NoInfer<TaskGraphCheck<G>>;

/**
 * Where `G` is inferred from: each task as TypeScript sees it before typing any `run` parameter. The
 * `readonly (keyof G)[]` keeps `after: ['user']` a list of literal names without a `const` type parameter,
 * which would also freeze the literals of every `fallback`.
 */
type TaskGraph<G> = {
  [K in keyof G]: G[K] | { [P in keyof G[K]]: P extends 'after' ? G[K][P] | readonly (keyof G)[] : G[K][P] };
};
/** A copy: a conditional type sees an inferred object literal as fresh, its other properties as excess. */
type Plain<V> = { [P in keyof V]: V[P] };
type AfterNames<S> = S extends { after: readonly (infer N)[] } ? N : never;
/** A dependency's value when its dependents are typed: `unknown` while its own `run` is still to be typed. */
type KnownValue<V> = unknown extends V
  ? unknown
  : V extends (ctx: never) => infer R
    ? Awaited<R>
    : Plain<V> extends { run: infer F }
      ? unknown extends F
        ? unknown
        : TaskValue<Plain<V>>
      : unknown;
/** What task `K` (or each member of a union of tasks) must be; `S` is `G[K]`, named to distribute. */
type TaskShape<G, K extends keyof G, S = G[K]> = unknown extends S
  ? TaskFn<unknown, { [D in never]: never }> | { run: TaskFn<unknown, { [D in never]: never }> }
  : S extends (...args: never[]) => unknown
    ? TaskFn<unknown, { [D in never]: never }>
    : S extends object
      ? [Exclude<keyof S, keyof TaskSpec>] extends [never]
        ? string extends AfterNames<Plain<S>>
          ? Task
          : {
              run: TaskFn<unknown, { [D in AfterNames<Plain<S>> & keyof G]: KnownValue<G[D]> }>;
              after?: readonly Exclude<keyof G & string, K>[];
            }
        : UnknownTaskOption<Exclude<keyof S, keyof TaskSpec> & string>
      : NotATask<K>;
/**
 * What a task spec with a property that is no task option is checked against, so that a misspelt option
 * (`timeoutMS`, `fallbak`) fails to compile, as an object literal's excess property would:
 * `Property '"is not a task option"' is missing in type '{ run: …; timeoutMS: number; }' but required in type
 * 'UnknownTaskOption<"timeoutMS">'`. Nothing real has that property.
 */
export interface UnknownTaskOption<Name extends string> {
  readonly 'is not a task option': Name;
}
/** What `gather({ a: 5 })` reads as: `Type 'number' is not assignable to type '"task \`a\` must be …"'`. */
type NotATask<K> = `task \`${K & string}\` must be a function or { run }`;
/**
 * The names in `after` that are no sibling's. While there is one, the tasks are checked against `Tasks`
 * rather than against their own inferred type, whose literal `after` would make the error read
 * `Type 'string' is not assignable to type 'never'` instead of naming the siblings.
 */
type UnknownNames<G> = {
  [K in keyof G]: string extends AfterNames<Plain<G[K]>>
    ? never
    : Exclude<AfterNames<Plain<G[K]>>, Exclude<keyof G & string, K>>;
}[keyof G];
/** Skipped for a record with an index signature (`Record<string, Task>`): names known at run time only. */
type TaskGraphCheck<G> = string extends keyof G ? Tasks : { [K in keyof G]: TaskShape<G, K> };

type SpecValue<S> = S extends { run: (ctx: never) => infer R } ? Awaited<R> : never;
type FallbackValue<S> = S extends { fallback: infer F }
  ? F extends (error: never) => infer G
    ? Awaited<G>
    : Awaited<F>
  : never;

/** The value type of one task (its fallback's type included). */
export type TaskValue<T> = T extends (ctx: never) => infer R ? Awaited<R> : SpecValue<T> | FallbackValue<T>;

/** The value object of `all()`. */
export type Results<T extends Tasks> = { [K in keyof T]: TaskValue<T[K]> };

/** One task's outcome in `settle()`. With a fallback, `value` holds it whatever the status. */
export interface Settled<V> {
  status: TaskStatus;
  value?: V;
  error?: unknown;
  /** Time from submission to settlement, queue wait included. */
  ms: number;
}

export type SettledResults<T extends Tasks> = { [K in keyof T]: Settled<TaskValue<T[K]>> };

/** An entry of `timings()`. */
export interface TaskTiming {
  name: string;
  /** When the task was submitted, in ms since the middleware saw the request. */
  start: number;
  /** Duration so far (still running) or until settlement. */
  ms: number;
  status: TaskStatus | 'queued' | 'running' | 'waiting';
}

/** `req.fanout`: one request's helper. */
export interface Fanout {
  /**
   * Runs every task concurrently within the bounds and the budget and resolves with all their values. If a
   * required task (one without `fallback`) fails, the others are aborted and it rejects with a
   * {@link FanoutError}: `TaskFailedError` (502), `BudgetExceededError` (504), `OverloadedError` (503) or
   * `ClientClosedError` (499).
   */
  all<T extends Tasks, G = T>(tasks: CheckedTasks<T, G>, options?: CallOptions): Promise<Results<T>>;
  /** Like `all()` but never rejects: every task's status, value or error, and duration. */
  settle<T extends Tasks, G = T>(
    tasks: CheckedTasks<T, G>,
    options?: CallOptions,
  ): Promise<SettledResults<T>>;
  /** One task under the same bounds and budget. */
  run<V>(task: Task<V>, name?: string): Promise<V>;
  /** Runs `method` of the worker script on the worker-thread pool under the request's budget. */
  worker<M extends WorkerMethodName>(
    method: M,
    args?: WorkerArgs<M>,
    options?: { timeoutMs?: number; transfer?: readonly Transferable[] },
  ): Promise<WorkerResult<M>>;
  /**
   * Aborted at the request deadline, when the client disconnects, or once the response has been sent (then
   * with a 500 `FanoutError` as its reason: nothing of the request is needed any more).
   */
  readonly signal: AbortSignal;
  /** The request's deadline in epoch ms. */
  readonly deadline: number;
  /** Milliseconds left in the request's budget, never negative. */
  remainingMs(): number;
  /**
   * The budget header for a call made outside a task: the request's remaining ms minus the propagation margin;
   * with the call's `url` (or origin), plus the transit learned for that origin (as `ctx.headers(url)`).
   */
  headers(url?: string | URL): Record<string, string>;
  /** The request's tasks so far. */
  timings(): TaskTiming[];
}

export interface CallOptions {
  /**
   * A tighter budget for this call in ms, counted from the call. Integer >= 1. It only tightens: a value
   * longer than the time the request has left is capped at it (the `express-fanout` debug namespace logs
   * the cap). To give a route a longer budget, put `budget(ms)` before its handler:
   * `app.get('/report', budget(5000), handler)`.
   * @default the request's remaining budget
   */
  budgetMs?: number;
}

/** What `stats()` returns. */
export interface FanoutStats {
  /** Tasks holding a slot (aborted ones included until they settle or are written off). */
  running: number;
  /** Tasks waiting for a slot. */
  queued: number;
  /**
   * The process-wide limit now: `concurrency`, or with the adaptive limit the sum of the dependencies' limits
   * (at most its `max`).
   */
  limit: number;
  /** Counters since the middleware was created. */
  completed: number;
  failed: number;
  timedOut: number;
  aborted: number;
  shed: number;
  abandoned: number;
  /** Retries made, and failed attempts not retried because the retry budget was spent. */
  retries: number;
  retriesDenied: number;
  /** Hedges started, and hedges whose attempt fulfilled first. */
  hedges: number;
  hedgeWins: number;
  /** Tasks that joined another's execution of the same `key`. */
  coalesced: number;
  /** Optional tasks that took their fallback at once: their name's recent p95 exceeded the time left. */
  skipped: number;
  /** Fleet-limit permits taken, and attempts that ran on the local bound because the store failed (Redis down). */
  limitAcquired: number;
  limitFailOpen: number;
  /**
   * Per dependency (a task's `dependency`, else its name), with the adaptive `concurrency`: its limit, tasks
   * holding a slot, waiting, and shed. `running`, `queued` and `shed` above are the totals. At most 256
   * dependencies, then one `'(other)'`; empty with a fixed `concurrency` (one limit for all).
   */
  dependencies: Record<string, DependencyStats>;
  workers: WorkerStats;
  /**
   * The transit learned per callee origin (`http://host:port`) by `ctx.fetch()`: the learned part of the
   * propagation margin for calls there, and the answers it comes from. Origins whose callee reports its work
   * time, at most 1,000 (least recently used first out); an origin with no answer for 5 minutes leaves.
   */
  transit: Record<string, TransitEstimate>;
  /** The process's door (`eventLoop` option). */
  eventLoop: EventLoopStats;
}

/** `stats().transit[origin]`: what `ctx.fetch()` learned of the way to one callee and back. */
export interface TransitEstimate {
  /** The learned part of the margin for calls to this origin, ms (the fixed `propagationMarginMs` comes on top). */
  marginMs: number;
  /** Recent answers it is made of (0 while it is only a new connection's set-up time). */
  samples: number;
}

/** `stats().eventLoop`: the event loop as the door sees it, and the requests it shed. */
export interface EventLoopStats {
  /** The loop's recent queueing delay, ms (0 with `eventLoop: false`). */
  delayMs: number;
  /** Event-loop utilisation over the last ~100 ms, 0 to 1 (0 with `eventLoop: false`). */
  utilization: number;
  /** The door is turning requests away: it shed one within the last `eventLoop.intervalMs`. */
  shedding: boolean;
  /** Requests the door shed (503), counted apart from `shed`, which counts tasks shed from the queues. */
  shed: number;
  /** Requests the door let in whose response has not ended yet (0 with `eventLoop: false`). */
  inFlight: number;
}

/** `stats().dependencies[name]`: one dependency's bulkhead. */
export interface DependencyStats {
  /** Its adaptive limit now: the calls it takes at once, inflated while the event loop holds replies up. */
  limit: number;
  /** Its tasks holding a slot. */
  running: number;
  /** Its tasks waiting for a slot (at most half of `maxQueue`). */
  queued: number;
  /** Its tasks shed since the middleware was created (a whole call shed counts each of its tasks). */
  shed: number;
}

/** `stats().workers`: the worker queue (the package's own, not workerpool's) and the threads. */
export interface WorkerStats {
  /** Worker calls running on a thread (a thread being replaced after a cancellation included). */
  busy: number;
  /** Threads started and free. */
  idle: number;
  /** Worker calls waiting for a thread, in the request's arrival order; at most `maxQueueSize`. */
  pending: number;
  /**
   * Worker calls shed (503) since the start: the queue was full, or admission judged that the call could not
   * finish before its deadline (at submission, or while it waited). Counted in the top-level `shed` too.
   */
  shed: number;
  /** Threads terminated to cancel a task (deadline, disconnect). */
  terminated: number;
  /** Threads that exited or crashed on their own. */
  crashed: number;
}

/** The middleware `fanout()` returns. */
export interface FanoutMiddleware {
  (
    req: import('express').Request,
    res: import('express').Response,
    next: import('express').NextFunction,
  ): void;
  /**
   * Stop admitting tasks, wait for running ones to settle (bounded by their budgets and `graceMs`), end workers.
   *
   * A task that ignores its abort signal keeps its slot until `graceMs` after its abort; `close()` also bounds
   * that on its own clock: such a task is written off at most `graceMs` after the call, even when its grace
   * timer belonged to a fake clock that no longer runs (a test that called `jest.useRealTimers()` first).
   */
  close(): Promise<void>;
  stats(): FanoutStats;
  /**
   * Adds an observer of every task (see {@link FanoutObserver}); returns a function that removes it. For
   * integrations (`express-fanout/prometheus`, `express-fanout/otel`); an app has `onTask`.
   */
  observe(observer: FanoutObserver): () => void;
}

export type { FanoutError };

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The request's fan-out helper, set by `app.use(fanout())`. */
      fanout: import('./types').Fanout;
    }
  }
}
