import type { AdaptiveLimit } from './adaptive-limit';
import type { Admission } from './admission';

/**
 * The queue's building blocks, kept apart from the scheduler's slot accounting (scheduler.ts): a {@link Job},
 * a request's {@link Lane}, a request's {@link Queue} in one dependency, and the {@link Bulkhead} of one
 * dependency (its own limit, admission and arrival-ordered heap of waiting requests).
 */
export interface Job {
  /** Called when the job gets its slots. Must not release synchronously. */
  start(): void;
  /**
   * What the admission policy reads (a task has them; a job without them is never shed by expected wait nor
   * dropped): its deadline and submission time, performance ms.
   */
  readonly deadline?: number;
  readonly submittedAt?: number;
  /** Its task's name: service times are also kept per name, to judge whether it can still finish. */
  readonly name?: string;
  /** Its dependency's bulkhead (`Scheduler.bulkhead()`); none: the scheduler's default one. */
  readonly bulkhead?: Bulkhead;
  /** Set by the scheduler when the job gets its slot, for the latency samples; `NaN` skips its sample. */
  startedAt?: number;
  /** The loop monitor's cumulative delay when the job got its slot (set by the scheduler when it has one). */
  loopAt?: number;
  /** Ends a queued job that will not be started (it can no longer finish); it leaves through `Scheduler.cancel`. */
  drop?(detail: string): void;
  /** A job that needs no slot here: started at once and never counted (a task that only calls a worker). */
  readonly slotless?: boolean;
  /** Intrusive FIFO links and queue membership, owned by the scheduler. */
  nextJob: Job | null;
  prevJob: Job | null;
  queued: boolean;
}

/** One request's waiting jobs for one bulkhead, in submission order; in the bulkhead's heap while eligible. */
export class Queue {
  head: Job | null = null;
  tail: Job | null = null;
  /** Jobs waiting in this queue. */
  count = 0;
  heapIndex = -1;
  /** The request it belongs to (a lane is its own queue in the scheduler's default bulkhead). */
  readonly lane: Lane;

  /** `arrival` orders queues (the time the middleware saw the request); `id` breaks ties. */
  constructor(
    readonly arrival: number,
    readonly id: number,
    lane: Lane | null,
    /** `null`: the scheduler's default bulkhead. */
    readonly bulkhead: Bulkhead | null,
  ) {
    this.lane = lane ?? (this as unknown as Lane);
  }
}

/**
 * One request: the slots it holds across every dependency (`perRequest` bounds them) and the jobs it has
 * waiting. It is also its own queue in the scheduler's default bulkhead (a fixed `concurrency`, the worker
 * pool), so the common case needs no second object; its queues in other bulkheads are made on first use.
 */
export class Lane extends Queue {
  running = 0;
  /** Jobs waiting, every bulkhead. */
  waiting = 0;
  /** Its queues in the per-dependency bulkheads, made when a job first waits there. */
  queues: Queue[] | null = null;

  constructor(arrival: number, id: number) {
    super(arrival, id, null, null);
  }
}

/** `stats().dependencies[name]`. */
export interface BulkheadStats {
  limit: number;
  running: number;
  queued: number;
  shed: number;
}

/**
 * One dependency's share of the scheduler: its own limit (fixed, or found by its own {@link AdaptiveLimit}),
 * its own {@link Admission} (expected wait, can-it-finish, CoDel) and the requests waiting for it, in arrival
 * order (a binary min-heap of queues, each knowing its index for O(log n) removal). A saturated dependency
 * fills its own heap and sheds its own tasks; the others' slots are not its to take.
 */
export class Bulkhead {
  running = 0;
  queued = 0;
  /** Tasks of this dependency shed (counted by the runtime, which settles them). */
  shed = 0;
  /** Its limit now: the ceiling, or its adaptive limit (at most the ceiling). */
  limit: number;
  /** Queues with a waiting job whose request may take one more slot. */
  readonly heap: Queue[] = [];
  /** Its index in the scheduler's list of bulkheads with a non-empty heap; -1 when not there. */
  activeIndex = -1;
  /**
   * One `all()` call's tally here while the call is admitted as a whole (call.ts): marked with the call's turn,
   * so that finding a task's dependency costs O(1) however many dependencies the call names.
   */
  readonly tally = { turn: 0, room: 0, ready: 0, required: 0, skip: 0 };

  constructor(
    readonly name: string,
    readonly ceiling: number,
    readonly adaptive: AdaptiveLimit | null,
    readonly admission: Admission | null,
  ) {
    this.limit = adaptive === null ? ceiling : Math.min(ceiling, adaptive.limit);
  }

  stats(): BulkheadStats {
    return { limit: this.limit, running: this.running, queued: this.queued, shed: this.shed };
  }

  push(queue: Queue): void {
    queue.heapIndex = this.heap.length;
    this.heap.push(queue);
    this.up(queue.heapIndex);
  }

  remove(queue: Queue): void {
    const heap = this.heap;
    const index = queue.heapIndex;
    const last = heap.pop()!;
    queue.heapIndex = -1;
    if (index === heap.length) return;
    heap[index] = last;
    last.heapIndex = index;
    this.down(index);
    this.up(last.heapIndex);
  }

  /** The eligible queue that arrived last, for LIFO: a leaf of the min-heap, found in O(queues / 2). */
  newest(): Queue {
    const heap = this.heap;
    const n = heap.length;
    let best = heap[n - 1]!;
    for (let i = n >> 1; i < n - 1; i++) {
      const queue = heap[i]!;
      if (before(best, queue)) best = queue;
    }
    return best;
  }

  private up(index: number): void {
    const heap = this.heap;
    const queue = heap[index]!;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex]!;
      if (!before(queue, parent)) break;
      heap[index] = parent;
      parent.heapIndex = index;
      index = parentIndex;
    }
    heap[index] = queue;
    queue.heapIndex = index;
  }

  private down(index: number): void {
    const heap = this.heap;
    const queue = heap[index]!;
    const n = heap.length;
    for (;;) {
      let child = 2 * index + 1;
      if (child >= n) break;
      const right = child + 1;
      if (right < n && before(heap[right]!, heap[child]!)) child = right;
      const c = heap[child]!;
      if (!before(c, queue)) break;
      heap[index] = c;
      c.heapIndex = index;
      index = child;
    }
    heap[index] = queue;
    queue.heapIndex = index;
  }
}

/** Whether `a`'s request arrived before `b`'s. */
export function before(a: Queue, b: Queue): boolean {
  return a.arrival < b.arrival || (a.arrival === b.arrival && a.id < b.id);
}
