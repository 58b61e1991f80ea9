// The numbers of the mixed scenario, shared by its server and by the runner that sets its targets.

export const mixed = {
  /** The IO route's three dependencies, ms each, run together. */
  ioCallsMs: [20, 20, 20] as const,
  /** `fib(n)` of the CPU route: about 10 ms of one core here. */
  fibN: 28,
  /** The server's `concurrency`: fewer IO slots than CPU requests in flight, so a task that held its slot while
   * it waited for a thread would starve the IO route. */
  concurrency: 24,
  /** One thread: the event loop keeps the other core of the 2-core machine this runs on. */
  maxWorkers: 1,
  /**
   * The CPU route's closed-loop connections: more work than the thread can do, and more requests than
   * `concurrency`, while the backlog (32 × 10 ms) stays inside the default 1 s budget, so that calls are not cut.
   */
  cpuConnections: 32,
  /** The IO route's offered load. */
  ioConnections: 20,
  ioRate: 200,
};
