/**
 * Single-flight (`key`): tasks with an equal key in flight in the same middleware, from any request, share one
 * execution, as Go's `singleflight` and Hystrix's collapser do. It is not a cache: the entry is gone the moment
 * the execution settles (or is abandoned), and the next task with that key starts a new one.
 *
 * The execution is the attempts of the first task with the key (the *owner*): they take the owner's request's
 * slot and lane, so the bounds count the shared work once, against the request that started it. Every waiter,
 * the owner included, keeps its own deadline, timeouts and fallback and may leave at any time. When the owner
 * leaves (its request ends, its timeout passes) while others still wait, the execution goes on for them, still
 * in the owner's slot (like an aborted task's slot kept for `graceMs`, it is counted until the work settles),
 * without further retries or hedges; its `ctx.deadline` is then the latest of the remaining waiters'. Only when
 * the last waiter leaves is the execution aborted.
 */
export interface FlightWaiter {
  /** The waiter's deadline, performance ms. */
  readonly deadline: number;
  /** The shared execution's outcome reached this waiter. */
  fromFlight(status: 'fulfilled' | 'rejected' | 'timeout' | 'shed', valueOrError: unknown): void;
  /** The owner only: every waiter has left; abort the execution. */
  abandonExecution(reason: unknown): void;
}

export class Flight {
  readonly waiters = new Set<FlightWaiter>();
  /** The owner has left while others still wait: the execution runs on for them. */
  ownerLeft = false;

  constructor(
    private readonly registry: SingleFlight,
    readonly key: string,
    readonly owner: FlightWaiter,
  ) {
    this.waiters.add(owner);
  }

  /** The latest deadline of those still waiting (the owner's once nobody is left). */
  get deadline(): number {
    if (!this.ownerLeft) return this.owner.deadline;
    let latest = Number.NEGATIVE_INFINITY;
    for (const waiter of this.waiters) if (waiter.deadline > latest) latest = waiter.deadline;
    return latest === Number.NEGATIVE_INFINITY ? this.owner.deadline : latest;
  }

  /**
   * A waiter leaves before the outcome. Returns true when the execution must go on (the owner left and others
   * wait). When the last waiter leaves, the entry is gone and the owner's execution is aborted.
   */
  leave(waiter: FlightWaiter, reason: unknown): boolean {
    if (!this.waiters.delete(waiter)) return false;
    if (this.waiters.size > 0) {
      if (waiter === this.owner) this.ownerLeft = true;
      return waiter === this.owner;
    }
    this.registry.forget(this);
    if (waiter !== this.owner) this.owner.abandonExecution(reason);
    return false;
  }

  /** The execution settled: every waiter but the owner gets its outcome; the entry is gone. */
  deliver(status: 'fulfilled' | 'rejected' | 'timeout' | 'shed', valueOrError: unknown): void {
    this.registry.forget(this);
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) if (waiter !== this.owner) waiter.fromFlight(status, valueOrError);
  }
}

/** The executions in flight of one middleware, by key. */
export class SingleFlight {
  private readonly flights = new Map<string, Flight>();

  /** Joins the execution in flight for `key`, if any; otherwise makes `waiter` the owner of a new one. */
  join(key: string, waiter: FlightWaiter): { flight: Flight; joined: boolean } {
    const existing = this.flights.get(key);
    if (existing !== undefined) {
      existing.waiters.add(waiter);
      return { flight: existing, joined: true };
    }
    const flight = new Flight(this, key, waiter);
    this.flights.set(key, flight);
    return { flight, joined: false };
  }

  forget(flight: Flight): void {
    if (this.flights.get(flight.key) === flight) this.flights.delete(flight.key);
  }
}
