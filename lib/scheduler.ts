import { performance } from 'node:perf_hooks';
import type { AdaptiveLimit } from './adaptive-limit';
import type { Admission as AdmissionPolicy } from './admission';
import type { LoopMonitor } from './loop-monitor';

/**
 * The bounded queue shared by every request of one middleware instance.
 *
 * Slots: at most `concurrency` jobs hold a slot process-wide, at most `perRequest` per lane (one lane per
 * request). Waiting jobs (at most `maxQueue`) sit in their own lane's FIFO; lanes that have a waiting job *and*
 * a free per-request slot are "eligible" and kept in a min-heap ordered by the request's arrival. A freed slot
 * goes to the oldest eligible request, so under saturation requests are served in arrival order instead of
 * having their tasks scattered behind later requests' (which collapses goodput at the limit: every request
 * then finishes late). Every operation is O(1) or O(log lanes); nothing scans a global list per task.
 *
 * Invariant: while the heap is not empty, every process-wide slot is taken (we drain whenever one frees), so a
 * submission that finds a free slot may start at once without overtaking anyone.
 *
 * The process-wide `limit` is `concurrency`, or what an {@link AdaptiveLimit} finds from the time jobs hold
 * their slots (sampled on release). Who may queue, which queued job is dropped rather than started, and whether
 * the newest lane goes first (adaptive LIFO) is the {@link AdmissionPolicy}'s call (admission.ts); the scheduler
 * only gives it the numbers: queue length, the job's deadline and submission time, one clock read per release
 * and per drain.
 *
 * A running job may lend its slot back while it waits on something that has slots of its own (a task waiting
 * for a worker thread): {@link Scheduler.lend}, then {@link Scheduler.retake} at the front of its lane, or
 * {@link Scheduler.returned} if it ends meanwhile. The worker pool runs a second scheduler of this class, one slot
 * per thread, so worker calls are served in the requests' arrival order too.
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
  /** Set by the scheduler when the job gets its slot, for the latency samples; `NaN` skips its sample. */
  startedAt?: number;
  /** The loop monitor's cumulative delay when the job got its slot (set by the scheduler when it has one). */
  loopAt?: number;
  /** Ends a queued job that will not be started (it can no longer finish); it leaves through {@link Scheduler.cancel}. */
  drop?(detail: string): void;
  /** A job that needs no slot here: started at once and never counted (a task that only calls a worker). */
  readonly slotless?: boolean;
  /** Intrusive FIFO links and queue membership, owned by the scheduler. */
  nextJob: Job | null;
  prevJob: Job | null;
  queued: boolean;
}

export class Lane {
  running = 0;
  waiting = 0;
  head: Job | null = null;
  tail: Job | null = null;
  heapIndex = -1;

  /** `arrival` orders lanes (the time the middleware saw the request); `id` breaks ties. */
  constructor(
    readonly arrival: number,
    readonly id: number,
  ) {}
}

/** What {@link Scheduler.submit} did with a job. */
export type Admission = 'started' | 'queued' | 'shed';

/** The admission policy and the adaptive limit, both optional (the worker pool's scheduler has neither). */
export interface SchedulerPolicy {
  admission?: AdmissionPolicy;
  adaptive?: AdaptiveLimit;
  /** The event loop's delay, taken out of the adaptive limit's latency samples (adaptive-limit.ts). */
  loop?: LoopMonitor;
  /** The clock, performance ms (a fake one in tests). */
  now?: () => number;
}

export class Scheduler {
  running = 0;
  /** The process-wide limit now: `concurrency`, or what the adaptive limit found (at most `concurrency`). */
  limit: number;
  queued = 0;
  /** Jobs that lent their slot back and have not taken it again nor ended (see {@link lend}). */
  away = 0;
  private readonly heap: Lane[] = [];
  private idleWaiters: (() => void)[] = [];
  /** While > 0, freed slots are not handed out (see {@link hold}). */
  private holds = 0;

  constructor(
    readonly concurrency: number,
    readonly perRequest: number,
    readonly maxQueue: number,
    policy: SchedulerPolicy = {},
  ) {
    this.admission = policy.admission ?? null;
    this.adaptive = policy.adaptive ?? null;
    this.loop = this.adaptive === null ? null : (policy.loop ?? null);
    this.now = policy.now ?? performance.now.bind(performance);
    this.timed = this.admission !== null || this.adaptive !== null;
    this.limit = this.adaptive ? Math.min(concurrency, this.adaptive.limit) : concurrency;
  }

  private readonly admission: AdmissionPolicy | null;
  private readonly adaptive: AdaptiveLimit | null;
  private readonly loop: LoopMonitor | null;
  private readonly now: () => number;
  /** Slots are timed (admission or an adaptive limit): the job's start is noted and its release sampled. */
  private readonly timed: boolean;
  /** Why the last submission was shed, for {@link shedDetail}. */
  private refusal: 'full' | 'wait' = 'full';
  private refusedWaitMs = 0;
  private refusedLeftMs = 0;

  /** Starts the job now, queues it, or reports that it must be shed. */
  submit(lane: Lane, job: Job): Admission {
    if (job.slotless === true) {
      job.start();
      return 'started';
    }
    if (lane.running < this.perRequest && this.running < this.limit && this.heap.length === 0) {
      this.running++;
      lane.running++;
      if (this.timed) this.stamp(job, job.submittedAt ?? this.now());
      job.start();
      return 'started';
    }
    if (this.queued >= this.maxQueue) {
      this.refusal = 'full';
      return 'shed';
    }
    const admission = this.admission;
    if (admission !== null && job.deadline !== undefined) {
      const now = job.submittedAt ?? this.now();
      const left = job.deadline - now;
      if (admission.room(this.queued, left, this.limit, now) < 1) {
        this.refusal = 'wait';
        this.refusedWaitMs = admission.expectedWaitMs(this.queued, this.limit);
        this.refusedLeftMs = left;
        return 'shed';
      }
    }
    this.enqueue(lane, job, false);
    return job.queued ? 'queued' : 'started';
  }

  /** Puts a job in its lane's FIFO (at the front for a job taking its lent slot back), then hands out slots. */
  private enqueue(lane: Lane, job: Job, first: boolean): void {
    job.queued = true;
    if (first) {
      job.prevJob = null;
      job.nextJob = lane.head;
      if (lane.head) lane.head.prevJob = job;
      else lane.tail = job;
      lane.head = job;
    } else {
      job.nextJob = null;
      job.prevJob = lane.tail;
      if (lane.tail) lane.tail.nextJob = job;
      else lane.head = job;
      lane.tail = job;
    }
    lane.waiting++;
    this.queued++;
    if (lane.running < this.perRequest && lane.heapIndex < 0) this.push(lane);
    this.drain();
  }

  /**
   * Starts the job only if a slot is free now and nobody waits (neither in the queue's heap nor in its own
   * lane): a hedge, which never queues and never takes a slot someone waits for. Returns whether it started.
   */
  tryStart(lane: Lane, job: Job): boolean {
    if (lane.running >= this.perRequest || this.running >= this.limit) return false;
    if (this.heap.length !== 0 || lane.waiting !== 0) return false;
    this.running++;
    lane.running++;
    if (this.timed) this.stamp(job, this.now());
    job.start();
    return true;
  }

  /**
   * A running job gives its slot back for a while (it waits on a worker thread): the slot goes to the next job,
   * and the job counts as `away` (so {@link idle} still waits for it) until it calls {@link retake} or
   * {@link returned}. Safe inside a job's `start()`.
   */
  lend(lane: Lane): void {
    this.away++;
    this.running--;
    lane.running--;
    if (lane.waiting > 0 && lane.heapIndex < 0 && lane.running < this.perRequest) this.push(lane);
    this.drain();
  }

  /**
   * A job that lent its slot wants it back: `job.start()` is called when it has it, at once if a slot is free,
   * else before every other waiting job of its lane (it was running before them). Never shed, whatever
   * `maxQueue`: it held a slot already, so `running <= concurrency` still holds. Cancel it with {@link cancel}.
   */
  retake(lane: Lane, job: Job): void {
    this.away--;
    if (lane.running < this.perRequest && this.running < this.limit && this.heap.length === 0) {
      this.running++;
      lane.running++;
      job.start();
      return;
    }
    this.enqueue(lane, job, true);
  }

  /** A job that lent its slot ended without taking it back. */
  returned(): void {
    this.away--;
    this.notifyIfIdle();
  }

  /**
   * How many jobs submitted now to `lane` would be admitted (started or queued) rather than shed: the slots
   * they could take at once plus the room left in the queue (and, with a `deadline`, the room the expected
   * wait leaves before it).
   */
  capacity(lane: Lane, deadline?: number): number {
    const startable =
      this.heap.length === 0
        ? Math.max(0, Math.min(this.limit - this.running, this.perRequest - lane.running))
        : 0;
    let room = Math.max(0, this.maxQueue - this.queued);
    if (this.admission !== null && deadline !== undefined) {
      const now = this.now();
      room = Math.min(room, this.admission.room(this.queued, deadline - now, this.limit, now));
    }
    return startable + room;
  }

  /** `(3/256 running, 0/1024 queued)`: the occupancy an `OverloadedError` reports. */
  occupancy(): string {
    return `(${this.running}/${this.limit} running, ${this.queued}/${this.maxQueue} queued)`;
  }

  /** Why the last submission was shed, with the numbers, for its `OverloadedError`. */
  shedDetail(): string {
    if (this.refusal === 'full') return `no free slot and the queue is full ${this.occupancy()}`;
    return (
      `its expected wait for a slot (${Math.round(this.refusedWaitMs)} ms) leaves no time to run in the ` +
      `${Math.round(this.refusedLeftMs)} ms left ${this.occupancy()}`
    );
  }

  /** Removes a queued job (its task was aborted before it started). */
  cancel(lane: Lane, job: Job): void {
    if (!job.queued) return;
    this.unlink(lane, job);
    if (lane.waiting === 0 && lane.heapIndex >= 0) this.remove(lane.heapIndex);
    if (this.queued === 0 && this.admission !== null) this.admission.emptied(this.now());
    this.notifyIfIdle();
  }

  /** A job gave its slots back (it settled, or was written off after its grace period). */
  release(lane: Lane, job?: Job): void {
    const inFlight = this.running;
    this.running--;
    lane.running--;
    if (this.timed && job?.startedAt !== undefined) this.sample(job, job.startedAt, inFlight);
    if (lane.waiting > 0 && lane.heapIndex < 0 && lane.running < this.perRequest) this.push(lane);
    this.drain();
    this.notifyIfIdle();
  }

  /**
   * Defers the hand-out of freed slots until the matching {@link resume}. Settling a task can free slots and
   * settle its queued siblings (fail-fast, a deadline, a disconnect); a freed slot must not start a sibling
   * that is about to be dropped. Nests; call `resume()` in a `finally`.
   */
  hold(): void {
    this.holds++;
  }

  resume(): void {
    if (--this.holds > 0) return;
    this.drain();
    this.notifyIfIdle();
  }

  /** Runs `settle` between {@link hold} and {@link resume}. */
  held(settle: () => void): void {
    this.hold();
    try {
      settle();
    } finally {
      this.resume();
    }
  }

  /** Resolves once nothing runs, nothing waits and no lent slot is still out. */
  idle(): Promise<void> {
    if (this.running === 0 && this.queued === 0 && this.away === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** The job gets its slot at `now`: noted for its latency sample. */
  private stamp(job: Job, now: number): void {
    job.startedAt = now;
    if (this.loop !== null) job.loopAt = this.loop.delayTotalMs(now);
  }

  /** A slot held since `startedAt` was freed: feeds the drain rate, the service time and the adaptive limit. */
  private sample(job: Job, startedAt: number, inFlight: number): void {
    const now = this.now();
    const held = now - startedAt; // NaN for a job that lent its slot meanwhile: not a sample of the downstream
    this.admission?.released(now, held, this.queued > 0, job.name);
    const adaptive = this.adaptive;
    if (adaptive === null || !(held >= 0)) return;
    const loop = this.loop;
    const loopMs = loop === null || job.loopAt === undefined ? 0 : loop.delayTotalMs(now) - job.loopAt;
    if (adaptive.sample(now, held, inFlight, loopMs > 0 ? loopMs : 0)) {
      this.limit = Math.min(this.concurrency, adaptive.limit);
    }
  }

  private drain(): void {
    if (this.holds > 0) return;
    const heap = this.heap;
    if (heap.length === 0 || this.running >= this.limit) return;
    const admission = this.admission;
    const now = this.timed ? this.now() : 0;
    while (this.running < this.limit && heap.length > 0) {
      let lane = heap[0]!;
      let job = lane.head!;
      if (admission !== null) {
        // The oldest waiting task first: dropped if it can no longer finish (then look again).
        if (job.deadline !== undefined && job.drop && !admission.canFinish(job.deadline - now, job.name)) {
          this.dropJob(lane, job, job.deadline - now);
          continue;
        }
        if (admission.lifo) {
          lane = this.newest();
          job = lane.head!;
        }
        if (job.submittedAt !== undefined) admission.dequeued(now, now - job.submittedAt);
      }
      this.unlink(lane, job);
      this.running++;
      lane.running++;
      if (lane.waiting === 0 || lane.running >= this.perRequest) this.remove(lane.heapIndex);
      if (this.timed) this.stamp(job, now);
      job.start();
    }
    if (this.queued === 0) admission?.emptied(now);
  }

  /** Drops a queued job that can no longer finish; what its end settles must not re-enter the drain. */
  private dropJob(lane: Lane, job: Job, leftMs: number): void {
    const detail =
      `${leftMs > 0 ? `only ${Math.round(leftMs)} ms` : 'no time'} left when its turn came, ` +
      `about ${Math.round(this.admission!.serviceOf(job.name))} ms of work ${this.occupancy()}`;
    this.holds++;
    try {
      job.drop!(detail);
    } finally {
      this.holds--;
    }
    if (job.queued) this.cancel(lane, job);
  }

  /** The eligible lane that arrived last, for LIFO: a leaf of the min-heap, found in O(lanes / 2). */
  private newest(): Lane {
    const heap = this.heap;
    const n = heap.length;
    let best = heap[n - 1]!;
    for (let i = n >> 1; i < n - 1; i++) {
      const lane = heap[i]!;
      if (before(best, lane)) best = lane;
    }
    return best;
  }

  private unlink(lane: Lane, job: Job): void {
    const { prevJob, nextJob } = job;
    if (prevJob) prevJob.nextJob = nextJob;
    else lane.head = nextJob;
    if (nextJob) nextJob.prevJob = prevJob;
    else lane.tail = prevJob;
    job.nextJob = job.prevJob = null;
    job.queued = false;
    lane.waiting--;
    this.queued--;
  }

  private notifyIfIdle(): void {
    if (this.idleWaiters.length === 0 || this.running !== 0 || this.queued !== 0 || this.away !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  // A binary min-heap of lanes by (arrival, id), each lane knowing its index for O(log n) removal.

  private push(lane: Lane): void {
    lane.heapIndex = this.heap.length;
    this.heap.push(lane);
    this.up(lane.heapIndex);
  }

  private remove(index: number): void {
    const heap = this.heap;
    const removed = heap[index]!;
    const last = heap.pop()!;
    removed.heapIndex = -1;
    if (index === heap.length) return;
    heap[index] = last;
    last.heapIndex = index;
    this.down(index);
    this.up(last.heapIndex);
  }

  private up(index: number): void {
    const heap = this.heap;
    const lane = heap[index]!;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex]!;
      if (!before(lane, parent)) break;
      heap[index] = parent;
      parent.heapIndex = index;
      index = parentIndex;
    }
    heap[index] = lane;
    lane.heapIndex = index;
  }

  private down(index: number): void {
    const heap = this.heap;
    const lane = heap[index]!;
    const n = heap.length;
    for (;;) {
      let child = 2 * index + 1;
      if (child >= n) break;
      const right = child + 1;
      if (right < n && before(heap[right]!, heap[child]!)) child = right;
      const c = heap[child]!;
      if (!before(c, lane)) break;
      heap[index] = c;
      c.heapIndex = index;
      index = child;
    }
    heap[index] = lane;
    lane.heapIndex = index;
  }
}

function before(a: Lane, b: Lane): boolean {
  return a.arrival < b.arrival || (a.arrival === b.arrival && a.id < b.id);
}
