// Simulated dependencies, the same for every variant of a scenario. They take an optional AbortSignal, as real
// clients (fetch, pg, fs.promises) do: the fan-out variants pass theirs, the hand-written variants have none.
import { setTimeout as sleep } from 'node:timers/promises';
import { peak } from './app';
import { heavyTail } from './params';
import { seededRandom } from './seeded-random';

/** An IO call that answers `value` after `ms`, or rejects at once when `signal` aborts. */
export function dependency<T>(ms: number, value: T, signal?: AbortSignal): Promise<T> {
  return sleep(ms, value, signal ? { signal } : undefined);
}

// Seeded, so every variant meets the same sequence of slow or failing calls (in call order).
const random = seededRandom(0x5eed);

/** Heavy tail: 20 ms, except 5% of calls, which take 2 s. */
export function tailDependency(signal?: AbortSignal): Promise<number> {
  const ms = random() < heavyTail.slowShare ? heavyTail.slowMs : heavyTail.fastMs;
  return dependency(ms, ms, signal);
}

/**
 * A downstream service with a fixed capacity (a database with a pool of `capacity` connections): at most
 * `capacity` calls run at once, each for `ms`; the others wait in arrival order. An aborted call leaves the
 * queue, or frees its connection at once (the query is cancelled). Offered more than it can serve, its queue
 * and its latency grow without bound: that is what the overload scenario puts in front of each variant.
 */
export class Downstream {
  private running = 0;
  private readonly waiting = new Set<() => void>();

  constructor(
    public capacity: number,
    readonly ms: number,
  ) {}

  /** Changes the capacity (the overload scenario's step change); calls beyond it finish, none starts meanwhile. */
  resize(capacity: number): void {
    this.capacity = capacity;
    while (this.running < this.capacity && this.waiting.size > 0) this.grantNext();
  }

  /** Calls waiting for a connection. */
  get queued(): number {
    return this.waiting.size;
  }

  async call(signal?: AbortSignal): Promise<number> {
    await this.acquire(signal);
    try {
      return await dependency(this.ms, 1, signal);
    } finally {
      this.release();
    }
  }

  private acquire(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.running < this.capacity) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiting.delete(grant);
        reject(signal!.reason);
      };
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort);
        this.running++;
        resolve();
      };
      this.waiting.add(grant);
      peak('downstreamQueuePeak', this.waiting.size);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private release(): void {
    this.running--;
    if (this.running < this.capacity) this.grantNext();
  }

  private grantNext(): void {
    const next = this.waiting.values().next();
    if (!next.done) {
      this.waiting.delete(next.value);
      next.value();
    }
  }
}
