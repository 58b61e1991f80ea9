// The numbers of the four scenarios that put pressure on one resource at a time (issue 16): a surge of clients on a
// healthy downstream, a saturated dependency beside a healthy one, the worker threads, the event loop. Shared by
// the servers and the runner that sets the targets.

export const surge = {
  /** The three in-process timers of a request, ms. */
  timersMs: [5, 10, 20] as const,
  budgetMs: 1000,
  clients: [50, 100, 200, 1000] as const,
};
export const SURGE_VARIANTS = [
  'promise-all',
  'promise-all-abort',
  'defaults',
  'defaults-no-signal',
  'no-limits',
] as const;
export type SurgeVariant = (typeof SURGE_VARIANTS)[number];
/** The hand-written baselines: without cancellation, and with a per-request deadline that aborts the calls. */
export type SurgeBaseline = 'promise-all' | 'promise-all-abort';
/**
 * The package's variants: its options, and whether the tasks hand `ctx.signal` to their calls. A call that
 * listens to an AbortSignal costs Node 20 ~12 µs (EventTarget's listener, added and removed), more than the
 * package does a task: each package variant is compared with the hand-written one that cancels the same way.
 * `no-limits`: the bounds set out of the way, to tell the package's own cost from its controls'.
 */
export const SURGE_OPTIONS: Record<
  Exclude<SurgeVariant, SurgeBaseline>,
  { options: Record<string, unknown>; signal: boolean; baseline: SurgeBaseline }
> = {
  defaults: { options: {}, signal: true, baseline: 'promise-all-abort' },
  'defaults-no-signal': { options: {}, signal: false, baseline: 'promise-all' },
  'no-limits': {
    options: { concurrency: 100_000, maxQueue: 100_000 },
    signal: true,
    baseline: 'promise-all-abort',
  },
};

export const isolation = {
  /** `/slow`'s dependency: 32 connections, 50 ms a call, 3 calls a request: 213 req/s. */
  slowCapacity: 32,
  slowCallMs: 50,
  slowCallsPerRequest: 3,
  /** Offered to `/slow`, as a multiple of its dependency's capacity. */
  slowOverload: 3,
  /** `/fast`: one 5 ms call, offered 200 req/s. */
  fastMs: 5,
  fastRate: 200,
  budgetMs: 250,
  /** The dependency name `/slow`'s three tasks share, where the package has per-dependency limits. */
  slowDependency: 'slowdb',
};
export const ISOLATION_VARIANTS = ['defaults', 'bulkheads'] as const;
export type IsolationVariant = (typeof ISOLATION_VARIANTS)[number];
/** Two middleware instances tuned by hand, one per route: what a user does today to keep `/fast` apart. */
export const ISOLATION_BULKHEADS = {
  slow: { concurrency: isolation.slowCapacity, maxQueue: 64 },
  fast: { concurrency: 64 },
};

export const workersOverload = {
  /** CPU a worker call takes, ms (iterations of `burn()` calibrated by the runner, passed in the environment). */
  stepMs: 10,
  budgetMs: 250,
  overload: 3,
};
export const WORKERS_VARIANTS = ['defaults', 'tuned-queue-4'] as const;
export type WorkersVariant = (typeof WORKERS_VARIANTS)[number];
export const WORKERS_OPTIONS: Record<WorkersVariant, Record<string, unknown>> = {
  defaults: {},
  'tuned-queue-4': { maxQueueSize: 4 },
};

export const loopOverload = {
  /** Three IO tasks of 10 ms, then this much CPU on the event loop. */
  ioMs: 10,
  ioTasks: 3,
  cpuMs: 4,
  budgetMs: 250,
  overload: 3,
};
export const LOOP_VARIANTS = ['promise-all', 'defaults'] as const;
export type LoopVariant = (typeof LOOP_VARIANTS)[number];

/** The environment variable carrying the iterations of `burn()` that take one ms on this machine. */
export const BURN_PER_MS_ENV = 'BENCH_BURN_ITERATIONS_PER_MS';

/** Iterations of `burn()` per ms, as the runner measured them (the servers must all burn the same work). */
export function burnPerMs(): number {
  const value = Number(process.env[BURN_PER_MS_ENV]);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(
      `Expected ${BURN_PER_MS_ENV} to be a positive number, got ${process.env[BURN_PER_MS_ENV]}`,
    );
  }
  return value;
}
