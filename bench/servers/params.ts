// The numbers each scenario is built from, shared by the servers and by the runner that sets the targets.

export const story = {
  /** The story's three dependencies, ms. */
  dependenciesMs: [100, 200, 300] as const,
  /** The cap of the fan-out variants: above the 100 connections x 3 tasks in flight (the default 256 is not). */
  concurrency: 512,
};

export const heavyTail = {
  fastMs: 20,
  slowMs: 2000,
  slowShare: 0.05,
  budgetMs: 250,
};

export const overload = {
  /** The downstream's capacity (connections of its pool) and the fan-out variant's `concurrency`. */
  capacity: 32,
  callMs: 50,
  callsPerRequest: 3,
  budgetMs: 250,
  /** 64 waiting tasks drain in 64 / (32 / 50 ms) = 100 ms, inside the budget: a queued request still makes it. */
  maxQueue: 64,
};

export const blocking = {
  /** Iterations of `burn()`: about 20 ms of one core on the machine this was written on. */
  iterations: 10_000_000,
};

/** The overload scenario's variants: `unbounded` is a hand-written Promise.all, the others the package. */
export const OVERLOAD_VARIANTS = [
  'unbounded',
  'defaults',
  'fixed-256',
  'tuned-32-1024',
  'tuned-32-64',
  'lifo',
] as const;
export type OverloadVariant = (typeof OVERLOAD_VARIANTS)[number];

/** Each package variant's options besides the budget (the package's defaults fill in the rest). */
export const OVERLOAD_OPTIONS: Record<Exclude<OverloadVariant, 'unbounded'>, Record<string, unknown>> = {
  defaults: {},
  'fixed-256': { concurrency: 256 },
  'tuned-32-1024': { concurrency: overload.capacity, maxQueue: 1024 },
  'tuned-32-64': { concurrency: overload.capacity, maxQueue: overload.maxQueue },
  lifo: { admission: { lifo: true } },
};

/** Scenario 7, winning the tail back: its variants and numbers. */
export const TAIL_VARIANTS = [
  'hedge-fallback',
  'hedge-p95',
  'hedge-p95-tuned',
  'flaky-none',
  'flaky-retries',
  'storm-naive',
  'storm-budget',
  'sf-none',
  'sf-key',
] as const;
export type TailVariant = (typeof TAIL_VARIANTS)[number];

export const tailWins = {
  /**
   * Middleware options of every variant: the heavy-tail budget, and a fixed limit above the connections ×
   * tasks in flight (as the story scenario's), so what is measured is the task options, not the adaptive
   * limit (which, on this dependency, settles far below the 150 tasks in flight and sheds: a hedge would find
   * no free slot).
   */
  options: { budgetMs: heavyTail.budgetMs, concurrency: 512 } as Record<string, unknown>,
  /** Task options of the hedged variant with the defaults otherwise (one hedge, 5 % + 1/s hedge budget). */
  hedgeTask: { hedgeMs: 'p95' } as Record<string, unknown>,
  /**
   * The tuned hedged variant: a second hedge (a task whose first two attempts are both slow, 0.25 % of tasks,
   * 0.75 % of three-task requests, would otherwise fall back) and a 10 % hedge budget.
   */
  tunedTask: { hedgeMs: 'p95', hedges: 2 } as Record<string, unknown>,
  tunedOptions: { hedgeBudget: { ratio: 0.1 } } as Record<string, unknown>,
  flakyMs: 20,
  flakyShare: 0.1,
  singleFlightMs: 100,
  singleFlightConnections: 200,
  stormS: 5,
};
