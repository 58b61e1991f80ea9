import { performance } from 'node:perf_hooks';
import { AdaptiveLimit, type AdaptiveLimitSettings } from './adaptive-limit';
import { Admission as AdmissionPolicy, type AdmissionSettings } from './admission';
import { before, Bulkhead, Lane, Queue, type BulkheadStats, type Job } from './bulkhead';
import type { LoopMonitor } from './loop-monitor';

export { Bulkhead, Lane, type BulkheadStats, type Job } from './bulkhead';

/**
 * The bounded queue shared by every request of one middleware instance.
 *
 * Slots: at most `concurrency` jobs hold a slot process-wide (the ceiling), at most `perRequest` per lane (one
 * lane per request), and at most its own limit per dependency ({@link Bulkhead}, bulkhead.ts). Waiting jobs (at
 * most `maxQueue`, process-wide) sit in their request's FIFO for their dependency; such a queue whose request
 * has a free per-request slot is "eligible" and kept in its bulkhead's min-heap, ordered by the request's
 * arrival. A freed slot goes, among the bulkheads below their own limit, to the one whose oldest eligible
 * request arrived first; within a bulkhead, requests are served in arrival order instead of having their tasks
 * scattered behind later requests' (which collapses goodput at the limit: every request then finishes late).
 * Every operation is O(1) or O(log requests), plus a scan of the bulkheads that have someone waiting when a slot
 * is handed out (one, with a fixed `concurrency`); nothing scans a global list per task.
 *
 * Invariant: while a bulkhead's heap is not empty, its own slots or the ceiling's are all taken (we hand out
 * whenever one frees), so a submission that finds a free slot in its bulkhead and under the ceiling may start
 * at once without overtaking anyone.
 *
 * Bulkheads: with a fixed `concurrency` every job goes to one default bulkhead whose limit is the ceiling (one
 * limit, as before bulkheads). With per-dependency partitioning (`partition`, the adaptive default), each
 * dependency name gets a bulkhead with its own {@link AdaptiveLimit} and {@link AdmissionPolicy}, so a
 * saturated dependency queues and sheds only its own tasks; at most `maxDependencies` are tracked, and later
 * names share one overflow bulkhead. A bulkhead's limit is what its adaptive limit finds from the time its jobs
 * hold their slots (sampled on release, with the event loop's delay taken out: adaptive-limit.ts). Who may
 * queue, which queued job is dropped rather than started, and whether the newest request goes first (adaptive
 * LIFO) is its admission policy's call (admission.ts); the scheduler only gives it the numbers.
 *
 * A running job may lend its slot back while it waits on something that has slots of its own (a task waiting
 * for a worker thread): {@link Scheduler.lend}, then {@link Scheduler.retake} at the front of its queue, or
 * {@link Scheduler.returned} if it ends meanwhile. The worker pool runs a second scheduler of this class, one slot
 * per thread and an admission policy of its own, so worker calls are served in the requests' arrival order and
 * admitted by the same rules.
 */

/** What {@link Scheduler.submit} did with a job. */
export type Admission = 'started' | 'queued' | 'shed';

/** The admission policy and the adaptive limit, both optional (the worker pool's scheduler has admission only). */
export interface SchedulerPolicy {
  /** The default bulkhead's admission policy and adaptive limit (without `partition`). */
  admission?: AdmissionPolicy;
  adaptive?: AdaptiveLimit;
  /**
   * A bulkhead per dependency, each with its own adaptive limit and admission made from these settings
   * (`false`: none). The default bulkhead then only takes jobs that name none.
   */
  partition?: {
    adaptive: AdaptiveLimitSettings | false;
    admission: AdmissionSettings | false;
    /** Dependencies tracked at most; later names share one overflow bulkhead. @default 256 */
    maxDependencies?: number;
  };
  /** The event loop's delay, taken out of the adaptive limits' latency samples (adaptive-limit.ts). */
  loop?: LoopMonitor;
  /** The clock, performance ms (a fake one in tests). */
  now?: () => number;
}

/** Dependencies with a bulkhead of their own, at most (names may come from user input). */
export const MAX_DEPENDENCIES = 256;
/** The key of the bulkhead shared by the dependencies beyond {@link MAX_DEPENDENCIES}, in `stats()`. */
export const OVERFLOW_DEPENDENCY = '(other)';

export class Scheduler {
  running = 0;
  queued = 0;
  /** Jobs that lent their slot back and have not taken it again nor ended (see {@link lend}). */
  away = 0;
  /** The bulkhead of jobs that name none (every job, without `partition`). */
  readonly base: Bulkhead;
  private readonly byName = new Map<string, Bulkhead>();
  private overflow: Bulkhead | null = null;
  /**
   * The most one dependency's bulkhead may queue: half of `maxQueue` with a bulkhead per dependency, so that a
   * dependency that stopped answering (no drain rate, so no expected-wait admission) cannot fill the
   * process-wide queue and shed every other dependency's tasks; `maxQueue` with one bulkhead.
   */
  private readonly queueShare: number;
  /** Bulkheads whose heap is not empty. */
  private readonly active: Bulkhead[] = [];
  private idleWaiters: (() => void)[] = [];
  /** While > 0, freed slots are not handed out (see {@link hold}). */
  private holds = 0;
  /** The clock read of a release made while held, for the hand-out at {@link resume} (µs later). */
  private heldAt: number | undefined = undefined;
  private readonly partition: Required<NonNullable<SchedulerPolicy['partition']>> | null;
  private readonly loop: LoopMonitor | null;
  private readonly now: () => number;
  /** The clock is `performance.now()` (not a test's): a caller's own read of it may stand in for one. */
  private readonly realClock: boolean;
  /** Slots are timed (admission or an adaptive limit): the job's start is noted and its release sampled. */
  private readonly timed: boolean;
  /** Why the last submission was shed, for {@link shedDetail}. */
  private refusal: 'full' | 'wait' = 'full';
  private refusedBy: Bulkhead;
  private refusedWaitMs = 0;
  private refusedLeftMs = 0;

  constructor(
    /** The process-wide ceiling. */
    readonly concurrency: number,
    readonly perRequest: number,
    readonly maxQueue: number,
    policy: SchedulerPolicy = {},
  ) {
    this.now = policy.now ?? performance.now.bind(performance);
    this.realClock = policy.now === undefined;
    const p = policy.partition;
    this.partition = p ? { maxDependencies: MAX_DEPENDENCIES, ...p } : null;
    this.base = new Bulkhead('', concurrency, policy.adaptive ?? null, policy.admission ?? null);
    this.refusedBy = this.base;
    this.queueShare = p ? Math.max(1, Math.ceil(maxQueue / 2)) : maxQueue;
    this.timed =
      this.base.adaptive !== null ||
      this.base.admission !== null ||
      (p !== undefined && (p.adaptive !== false || p.admission !== false));
    const adaptive = this.base.adaptive !== null || (p !== undefined && p.adaptive !== false);
    this.loop = adaptive ? (policy.loop ?? null) : null;
  }

  /**
   * The process-wide limit now: with one bulkhead, its limit (`concurrency`, or what its adaptive limit found);
   * with a bulkhead per dependency, the sum of theirs (the adaptive `initial` before any), at most the ceiling.
   */
  get limit(): number {
    const p = this.partition;
    if (p === null) return this.base.limit;
    if (this.byName.size === 0) {
      return p.adaptive === false ? this.concurrency : Math.min(this.concurrency, p.adaptive.initial);
    }
    let sum = this.overflow?.limit ?? 0;
    for (const b of this.byName.values()) sum += b.limit;
    return Math.min(this.concurrency, sum);
  }

  /**
   * The bulkhead of the dependency `name`, made on first use (resolve it once per task, not per attempt). Without
   * `partition`, the default one.
   */
  bulkhead(name: string): Bulkhead {
    const p = this.partition;
    if (p === null) return this.base;
    let b = this.byName.get(name);
    if (b !== undefined) return b;
    if (this.byName.size >= p.maxDependencies) return (this.overflow ??= this.make(OVERFLOW_DEPENDENCY, p));
    b = this.make(name, p);
    this.byName.set(name, b);
    return b;
  }

  private make(name: string, p: NonNullable<Scheduler['partition']>): Bulkhead {
    return new Bulkhead(
      name,
      this.concurrency,
      p.adaptive === false ? null : new AdaptiveLimit(p.adaptive, this.now()),
      p.admission === false ? null : new AdmissionPolicy(p.admission),
    );
  }

  /** Each dependency's limit, running, queued and shed tasks (an object with own keys: names are user input). */
  dependencies(): Record<string, BulkheadStats> {
    const entries: [string, BulkheadStats][] = [];
    for (const [name, b] of this.byName) entries.push([name, b.stats()]);
    if (this.overflow !== null) entries.push([OVERFLOW_DEPENDENCY, this.overflow.stats()]);
    return Object.fromEntries(entries);
  }

  /** Starts the job now, queues it, or reports that it must be shed. */
  submit(lane: Lane, job: Job): Admission {
    if (job.slotless === true) {
      job.start();
      return 'started';
    }
    const b = job.bulkhead ?? this.base;
    if (this.free(lane, b)) {
      this.take(lane, b);
      if (this.timed) this.stamp(job, job.submittedAt ?? this.now());
      job.start();
      return 'started';
    }
    if (this.queued >= this.maxQueue || b.queued >= this.queueShare) {
      this.refusal = 'full';
      this.refusedBy = b;
      return 'shed';
    }
    const admission = b.admission;
    if (admission !== null && job.deadline !== undefined) {
      const now = job.submittedAt ?? this.now();
      const left = job.deadline - now;
      if (admission.room(b.queued, left, b.limit, now) < 1) {
        this.refusal = 'wait';
        this.refusedBy = b;
        this.refusedWaitMs = admission.expectedWaitMs(b.queued, b.limit);
        this.refusedLeftMs = left;
        return 'shed';
      }
    }
    this.enqueue(lane, job, false, b);
    return job.queued ? 'queued' : 'started';
  }

  /**
   * Starts the job only if a slot is free now and nobody waits (neither in its bulkhead's heap nor in its own
   * request): a hedge, which never queues and never takes a slot someone waits for. Returns whether it started.
   */
  tryStart(lane: Lane, job: Job): boolean {
    const b = job.bulkhead ?? this.base;
    if (lane.running >= this.perRequest || this.running >= this.concurrency || b.running >= b.limit) {
      return false;
    }
    if (b.heap.length !== 0 || lane.waiting !== 0) return false;
    this.take(lane, b);
    if (this.timed) this.stamp(job, this.now());
    job.start();
    return true;
  }

  /**
   * A running job gives its slot back for a while (it waits on a worker thread): the slot goes to the next job,
   * and the job counts as `away` (so {@link idle} still waits for it) until it calls {@link retake} or
   * {@link returned}. Safe inside a job's `start()`.
   */
  lend(lane: Lane, job?: Job): void {
    this.away++;
    this.give(lane, job?.bulkhead ?? this.base);
    this.pump();
  }

  /**
   * A job that lent its slot wants it back: `job.start()` is called when it has it, at once if a slot is free,
   * else before every other waiting job of its request in its bulkhead (it was running before them). Never
   * shed, whatever `maxQueue`: it held a slot already, so `running <= concurrency` still holds. Cancel it with
   * {@link cancel}.
   */
  retake(lane: Lane, job: Job): void {
    this.away--;
    const b = job.bulkhead ?? this.base;
    if (this.free(lane, b)) {
      this.take(lane, b);
      job.start();
      return;
    }
    this.enqueue(lane, job, true, b);
  }

  /** A job that lent its slot ended without taking it back. */
  returned(): void {
    this.away--;
    this.notifyIfIdle();
  }

  /** Jobs of `lane` that could start now in `bulkhead` without waiting: nobody waits there, and slots are free. */
  startable(lane: Lane, bulkhead: Bulkhead): number {
    const b = bulkhead;
    if (b.heap.length !== 0) return 0;
    return Math.max(
      0,
      Math.min(b.limit - b.running, this.concurrency - this.running, this.perRequest - lane.running),
    );
  }

  /**
   * How many jobs of `bulkhead` (the default one if omitted) submitted now to `lane` would be admitted (started
   * or queued) rather than shed: the slots they could take at once plus the room left in the queue (and, with a
   * `deadline`, the room the expected wait leaves before it). `now`: the caller's clock read, if it has one.
   */
  capacity(lane: Lane, deadline?: number, bulkhead: Bulkhead = this.base, now?: number): number {
    const b = bulkhead;
    const startable = this.startable(lane, b);
    let room = Math.max(0, Math.min(this.maxQueue - this.queued, this.queueShare - b.queued));
    if (b.admission !== null && deadline !== undefined) {
      const at = now ?? this.now();
      room = Math.min(room, b.admission.room(b.queued, deadline - at, b.limit, at));
    }
    return startable + room;
  }

  /**
   * `(3/256 running, 0/1024 queued)`: the occupancy an `OverloadedError` reports; for a dependency's bulkhead,
   * its own numbers first.
   */
  occupancy(bulkhead: Bulkhead = this.base): string {
    const all = `${this.running}/${this.limit} running, ${this.queued}/${this.maxQueue} queued`;
    if (bulkhead === this.base) return `(${all})`;
    return (
      `(dependency \`${bulkhead.name}\`: ${bulkhead.running}/${bulkhead.limit} running, ` +
      `${bulkhead.queued}/${this.queueShare} queued; all: ${all})`
    );
  }

  /** Why the last submission was shed, with the numbers, for its `OverloadedError`. */
  shedDetail(): string {
    const occupancy = this.occupancy(this.refusedBy);
    if (this.refusal === 'full') return `no free slot and the queue is full ${occupancy}`;
    return (
      `its expected wait for a slot (${Math.round(this.refusedWaitMs)} ms) leaves no time to run in the ` +
      `${Math.round(this.refusedLeftMs)} ms left ${occupancy}`
    );
  }

  /** Removes a queued job (its task was aborted before it started). */
  cancel(lane: Lane, job: Job): void {
    if (!job.queued) return;
    const b = job.bulkhead ?? this.base;
    const queue = this.queueOf(lane, b);
    this.unlink(queue, job, b);
    if (queue.count === 0 && queue.heapIndex >= 0) this.unlist(b, queue);
    this.notifyIfIdle();
  }

  /**
   * A job gave its slots back (it settled, or was written off after its grace period). Without `job` (a slot
   * taken back and returned unused), `bulkhead` says whose it was, and nothing is sampled. `now`: the caller's
   * `performance.now()` read, if it just made one.
   */
  release(lane: Lane, job?: Job, bulkhead?: Bulkhead, now?: number): void {
    const b = job?.bulkhead ?? bulkhead ?? this.base;
    const inFlight = b.running;
    this.give(lane, b);
    if (this.timed && job?.startedAt !== undefined) this.sample(job, b, job.startedAt, inFlight, now);
    // Held (an attempt's end is being applied): the hand-out waits for resume(), which may use this read.
    if (this.holds > 0) this.heldAt = now;
    this.pump(now);
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
    const at = this.heldAt;
    this.heldAt = undefined;
    this.pump(at);
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

  /**
   * A slot of `b` is free for `lane` now without overtaking anyone: under the request's, the process's and the
   * dependency's limits, with nobody of that dependency waiting.
   */
  private free(lane: Lane, b: Bulkhead): boolean {
    return (
      lane.running < this.perRequest &&
      this.running < this.concurrency &&
      b.running < b.limit &&
      b.heap.length === 0
    );
  }

  /** A slot of `b` goes to `lane`; a request that reaches `perRequest` leaves every heap. */
  private take(lane: Lane, b: Bulkhead): void {
    this.running++;
    b.running++;
    if (++lane.running === this.perRequest) {
      if (lane.heapIndex >= 0) this.unlist(this.base, lane);
      const queues = lane.queues;
      if (queues !== null) for (const q of queues) if (q.heapIndex >= 0) this.unlist(q.bulkhead!, q);
    }
  }

  /** `lane` gives a slot of `b` back; a request below `perRequest` again is eligible wherever it waits. */
  private give(lane: Lane, b: Bulkhead): void {
    this.running--;
    b.running--;
    if (lane.running-- !== this.perRequest || lane.waiting === 0) return;
    if (lane.count > 0 && lane.heapIndex < 0) this.list(this.base, lane);
    const queues = lane.queues;
    if (queues !== null)
      for (const q of queues) if (q.count > 0 && q.heapIndex < 0) this.list(q.bulkhead!, q);
  }

  /** The job gets its slot at `now`: noted for its latency sample. */
  private stamp(job: Job, now: number): void {
    job.startedAt = now;
    if (this.loop !== null) job.loopAt = this.loop.delayTotalMs(now);
  }

  /** A slot held since `startedAt` was freed: feeds the drain rate, the service time and the adaptive limit. */
  private sample(job: Job, b: Bulkhead, startedAt: number, inFlight: number, at?: number): void {
    // The caller's clock read, unless the scheduler runs on a clock of its own (a test's).
    const now = at !== undefined && this.realClock ? at : this.now();
    const held = now - startedAt; // NaN for a job that lent its slot meanwhile: not a sample of the downstream
    b.admission?.released(now, held, b.queued > 0, job.name);
    const adaptive = b.adaptive;
    if (adaptive === null || !(held >= 0)) return;
    // The loop's part of the hold: the delay it accrued meanwhile, but no more than the loop's recent delay
    // (a saturated loop is late at every tick of a long hold; the reply waited for about one).
    const loop = this.loop;
    let loopMs = 0;
    if (loop !== null && job.loopAt !== undefined) {
      loopMs = Math.min(loop.delayTotalMs(now) - job.loopAt, loop.recentDelayMs(now));
      if (!(loopMs > 0)) loopMs = 0;
    }
    if (adaptive.sample(now, held, inFlight, loopMs)) {
      b.limit = Math.min(this.concurrency, adaptive.limit);
    }
  }

  /** The request's queue in `b`, made on first use. */
  private queueOf(lane: Lane, b: Bulkhead): Queue {
    if (b === this.base) return lane;
    const queues = (lane.queues ??= []);
    for (const q of queues) if (q.bulkhead === b) return q;
    const q = new Queue(lane.arrival, lane.id, lane, b);
    queues.push(q);
    return q;
  }

  /** Puts a job in its request's queue (at the front for a job taking its lent slot back), then hands out slots. */
  private enqueue(lane: Lane, job: Job, first: boolean, b: Bulkhead): void {
    const queue = this.queueOf(lane, b);
    job.queued = true;
    if (first) {
      job.prevJob = null;
      job.nextJob = queue.head;
      if (queue.head) queue.head.prevJob = job;
      else queue.tail = job;
      queue.head = job;
    } else {
      job.nextJob = null;
      job.prevJob = queue.tail;
      if (queue.tail) queue.tail.nextJob = job;
      else queue.head = job;
      queue.tail = job;
    }
    queue.count++;
    lane.waiting++;
    b.queued++;
    this.queued++;
    if (lane.running < this.perRequest && queue.heapIndex < 0) this.list(b, queue);
    this.pump();
  }

  /** Hands out free slots: to the bulkhead with room whose oldest eligible request arrived first, until none. */
  /** `at`: the caller's `performance.now()` read, if it just made one. */
  private pump(at?: number): void {
    if (this.holds > 0 || this.active.length === 0) return;
    let now = at !== undefined && this.realClock ? at : Number.NaN;
    while (this.running < this.concurrency) {
      const b = this.next();
      if (b === null) break;
      if (now !== now) now = this.timed ? this.now() : 0;
      this.startNext(b, now);
    }
  }

  /** Among the bulkheads with a waiting request and a free slot of their own, the oldest request's. */
  private next(): Bulkhead | null {
    const active = this.active;
    let best: Bulkhead | null = null;
    for (let i = 0; i < active.length; i++) {
      const b = active[i]!;
      if (b.running >= b.limit) continue;
      if (best === null || before(b.heap[0]!, best.heap[0]!)) best = b;
    }
    return best;
  }

  private startNext(b: Bulkhead, now: number): void {
    let queue = b.heap[0]!;
    let job = queue.head!;
    const admission = b.admission;
    if (admission !== null) {
      // The oldest waiting task first: dropped if it can no longer finish (then look again).
      if (job.deadline !== undefined && job.drop && !admission.canFinish(job.deadline - now, job.name)) {
        this.dropJob(queue, job, b, job.deadline - now);
        return;
      }
      if (admission.lifo) {
        queue = b.newest();
        job = queue.head!;
      }
      if (job.submittedAt !== undefined) admission.dequeued(now, now - job.submittedAt);
    }
    this.unlink(queue, job, b);
    if (queue.count === 0) this.unlist(b, queue);
    this.take(queue.lane, b);
    if (this.timed) this.stamp(job, now);
    job.start();
  }

  /** Drops a queued job that can no longer finish; what its end settles must not re-enter the hand-out. */
  private dropJob(queue: Queue, job: Job, b: Bulkhead, leftMs: number): void {
    const detail =
      `${leftMs > 0 ? `only ${Math.round(leftMs)} ms` : 'no time'} left when its turn came, ` +
      `about ${Math.round(b.admission!.serviceOf(job.name))} ms of work ${this.occupancy(b)}`;
    this.holds++;
    try {
      job.drop!(detail);
    } finally {
      this.holds--;
    }
    if (job.queued) this.cancel(queue.lane, job);
  }

  private unlink(queue: Queue, job: Job, b: Bulkhead): void {
    const { prevJob, nextJob } = job;
    if (prevJob) prevJob.nextJob = nextJob;
    else queue.head = nextJob;
    if (nextJob) nextJob.prevJob = prevJob;
    else queue.tail = prevJob;
    job.nextJob = job.prevJob = null;
    job.queued = false;
    queue.count--;
    queue.lane.waiting--;
    this.queued--;
    // The bulkhead's queue is empty: arrival order again; its overload ends if it stays calm (CoDel).
    if (--b.queued === 0 && b.admission !== null) b.admission.emptied(this.now());
  }

  /** Puts an eligible queue in its bulkhead's heap. */
  private list(b: Bulkhead, queue: Queue): void {
    b.push(queue);
    if (b.activeIndex < 0) {
      b.activeIndex = this.active.length;
      this.active.push(b);
    }
  }

  /** Takes a queue out of its bulkhead's heap. */
  private unlist(b: Bulkhead, queue: Queue): void {
    b.remove(queue);
    if (b.heap.length !== 0) return;
    const active = this.active;
    const last = active.pop()!;
    if (last !== b) {
      active[b.activeIndex] = last;
      last.activeIndex = b.activeIndex;
    }
    b.activeIndex = -1;
  }

  private notifyIfIdle(): void {
    if (this.idleWaiters.length === 0 || this.running !== 0 || this.queued !== 0 || this.away !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
