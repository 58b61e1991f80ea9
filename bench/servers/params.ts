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
