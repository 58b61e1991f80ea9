import { describe, integer, rejectUnknown } from './validate';
import { DecayingRate, Ewma } from './latency';

/** Settings of {@link Admission}, every default applied (see `AdmissionOptions` in types.ts). */
export interface AdmissionSettings {
  /** CoDel's target: queue sojourn above it, for `intervalMs` without a break, is a sustained overload. */
  targetMs: number;
  intervalMs: number;
  /** Serve the newest requests first during a sustained overload (adaptive LIFO). */
  lifo: boolean;
}

export const ADMISSION_DEFAULTS: AdmissionSettings = { targetMs: 5, intervalMs: 100, lifo: false };

/** Time constant of the drain-rate estimate, ms. */
const DRAIN_TAU_MS = 100;

/** Service times vary (and grow while the downstream queues): a wait is admitted if this many times the average fits after it. */
const SERVICE_MARGIN = 1.25;

/**
 * The expected wait is an estimate too: a task is queued only if this many times it fits before its service
 * time. Without that headroom a task admitted at the edge (expected wait + service = what is left) is dropped
 * at its turn, late, whenever the queue drains a little slower than estimated: the admission and the check at
 * dequeue ({@link Admission.canFinish}) used the same line, so about half of the edge was a late 503 (measured
 * in the overload simulation, three task names on one saturated dependency: 70 of 2,582 sheds 150 ms late;
 * 2 of 2,557 with this margin and the drain rate's bound in {@link Admission.drainPerMs}).
 */
const WAIT_MARGIN = 1.25;

/** Task names with a service time of their own; beyond, a name is not judged (names built from user input). */
const MAX_NAMES = 512;

/**
 * Who may wait for a slot, and in which order they are served: the scheduler's policy, kept apart from its
 * data structures. Three rules, from Facebook's "Fail at Scale" (CoDel, adaptive LIFO) and gRPC's deadline
 * checks, made to work inside a request budget:
 *
 * 1. **Expected wait.** The scheduler measures its drain rate (slots freed per ms while work waits, a decaying
 *    average over ~100 ms) and how long a task holds its slot (an EWMA). A task that would wait behind `n`
 *    others expects `n / rate` ms in the queue; if that plus its service time exceeds its deadline's remaining
 *    time, it is shed at once (503) instead of being queued to die as a 504. Before anything was measured the
 *    rate is `limit / service time` (Little's law), and before that, only `maxQueue` bounds the queue.
 * 2. **Can it still finish.** A queued task whose remaining time is less than its name's average service time
 *    when its turn comes is dropped, not started.
 * 3. **Sustained overload** (CoDel): when every task dequeued for `intervalMs` had waited more than
 *    `targetMs`, the queue is standing, not absorbing a burst. Then the wait admitted is also capped at
 *    `intervalMs` (a longer standing queue only adds latency: the drain rate is the same) until the queue has
 *    been calm for `intervalMs`; with `lifo` the newest requests are served first until the queue drains.
 */
export class Admission {
  /** Slots freed per ms, counted only while tasks waited (every slot busy). */
  private readonly drain = new DecayingRate(DRAIN_TAU_MS);
  /** How long a task holds its slot, ms: all tasks (for the queue's wait), and per task name (can it finish). */
  readonly service = new Ewma(0.05);
  private readonly byName = new Map<string, Ewma>();
  /** Since when every dequeued task waited longer than `targetMs`; `NaN` when the last one did not. */
  private aboveSince = Number.NaN;
  /** During an overload, since when no task waited longer than `targetMs` (or the queue was empty). */
  private calmSince = Number.NaN;
  /**
   * A sustained overload is on: the standing queue is capped at `intervalMs`. It ends once the queue has been
   * calm (empty, or every task served within `targetMs`) for `intervalMs`: a burst that empties the queue for a
   * moment does not reopen it to waits as long as the budget.
   */
  overloaded = false;
  /**
   * Serving the newest requests first: with `lifo`, during an overload, until the queue drains (and again from
   * the next task that waits longer than `targetMs` while the overload lasts).
   */
  lifo = false;

  constructor(readonly settings: AdmissionSettings) {}

  /**
   * Slots freed per ms while work waits; `NaN` when nothing is known yet. At most `limit / service` (Little's
   * law: `limit` slots, each held `service` ms on average, free no more than that many a ms): the measured
   * rate is a decaying count read at its last event, high right after a burst of releases (a group of calls
   * answered together; the slots freed at once when a sibling's failure aborts the running tasks of its
   * request), and a queue admitted at that rate waits longer than expected and is dropped late.
   */
  drainPerMs(limit: number): number {
    const measured = this.drain.perMs();
    const service = this.service.value;
    const turnover = service > 0 ? limit / service : Number.NaN;
    if (measured !== measured || measured > turnover) return turnover;
    return measured;
  }

  /** The wait, ms, of a task with `ahead` tasks queued before it; `NaN` when unknown. */
  expectedWaitMs(ahead: number, limit: number): number {
    return (ahead + 1) / this.drainPerMs(limit);
  }

  /**
   * How many more tasks may queue behind `queued` others when their deadline is `remainingMs` away: the
   * queue the drain rate empties in time for each to run; `Infinity` while the rate is unknown.
   */
  room(queued: number, remainingMs: number, limit: number, now: number): number {
    const rate = this.drainPerMs(limit);
    if (!(rate > 0)) return Number.POSITIVE_INFINITY;
    const service = this.service.value;
    let wait = service === service ? remainingMs - SERVICE_MARGIN * service : remainingMs;
    if (this.overloaded && !this.calmFor(now) && wait > this.settings.intervalMs)
      wait = this.settings.intervalMs;
    return Math.max(0, Math.floor((wait / WAIT_MARGIN) * rate) - queued);
  }

  /** The average service time of tasks named `name` (of all tasks if it has none yet), ms. */
  serviceOf(name: string | undefined): number {
    return (name === undefined ? undefined : this.byName.get(name))?.value ?? this.service.value;
  }

  /**
   * Whether a task named `name` may start with `remainingMs` left: its own name's average service time fits,
   * with the same margin as the expected wait ({@link SERVICE_MARGIN}): a task started with just its average
   * left finishes at its deadline half the time, a 504 instead of a 503 (measured: the overload test's 14th
   * request, started with exactly its 50 ms left, lost the race to its deadline timer now and then).
   * A name not seen yet is not judged (the average of other tasks may be another kind of work entirely).
   */
  canFinish(remainingMs: number, name: string | undefined): boolean {
    if (!(remainingMs > 0)) return false;
    const service = name === undefined ? undefined : this.byName.get(name);
    return service === undefined || !(remainingMs < SERVICE_MARGIN * service.value);
  }

  /** A slot was freed at `now`, held `heldMs` by a task named `name`; `waiting`: it goes to a queued task. */
  released(now: number, heldMs: number, waiting: boolean, name: string | undefined): void {
    if (heldMs >= 0) {
      this.service.update(heldMs);
      if (name !== undefined) {
        let own = this.byName.get(name);
        if (own === undefined && this.byName.size < MAX_NAMES) this.byName.set(name, (own = new Ewma(0.1)));
        own?.update(heldMs);
      }
    }
    if (waiting) this.drain.event(now);
    else this.drain.pause();
  }

  /** A queued task started at `now` after waiting `sojournMs` (CoDel's measurement). */
  dequeued(now: number, sojournMs: number): void {
    if (sojournMs < this.settings.targetMs) {
      this.aboveSince = Number.NaN;
      if (this.overloaded && this.calmSince !== this.calmSince) this.calmSince = now;
      else this.calmFor(now);
      return;
    }
    this.calmSince = Number.NaN;
    if (this.overloaded) {
      // Waiting again after the queue drained for a moment: newest first again.
      this.lifo = this.settings.lifo;
      return;
    }
    const since = this.aboveSince;
    if (since !== since) this.aboveSince = now;
    else if (now - since >= this.settings.intervalMs) {
      this.overloaded = true;
      this.lifo = this.settings.lifo;
    }
  }

  /** The queue is empty at `now`: arrival order again; the overload ends if it stays calm for `intervalMs`. */
  emptied(now: number): void {
    this.aboveSince = Number.NaN;
    this.lifo = false;
    if (this.overloaded && this.calmSince !== this.calmSince) this.calmSince = now;
  }

  /** Whether the overload has been calm for `intervalMs` by `now` (and ends it if so). */
  private calmFor(now: number): boolean {
    const since = this.calmSince;
    if (!this.overloaded || since !== since || now - since < this.settings.intervalMs) return false;
    this.overloaded = false;
    this.calmSince = Number.NaN;
    return true;
  }
}

/** The `admission` option: `false` (only `maxQueue` bounds the queue) or `{ targetMs, intervalMs, lifo }`. */
export function resolveAdmission(value: unknown): AdmissionSettings | false {
  if (value === undefined) return { ...ADMISSION_DEFAULTS };
  if (value === false) return false;
  if (typeof value !== 'object' || value === null) {
    throw new TypeError(`Expected \`admission\` to be an object or \`false\`, got ${describe(value)}`);
  }
  rejectUnknown(value, ['targetMs', 'intervalMs', 'lifo'], 'admission.');
  const o = value as Partial<AdmissionSettings>;
  if (o.lifo !== undefined && typeof o.lifo !== 'boolean') {
    throw new TypeError(`Expected \`admission.lifo\` to be a boolean, got ${describe(o.lifo)}`);
  }
  return {
    targetMs:
      o.targetMs === undefined ? ADMISSION_DEFAULTS.targetMs : integer('admission.targetMs', o.targetMs, 1),
    intervalMs:
      o.intervalMs === undefined
        ? ADMISSION_DEFAULTS.intervalMs
        : integer('admission.intervalMs', o.intervalMs, 1),
    lifo: o.lifo ?? ADMISSION_DEFAULTS.lifo,
  };
}
