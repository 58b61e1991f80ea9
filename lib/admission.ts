import { describe, integer, rejectUnknown } from './options';
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
 * 2. **Can it still finish.** A queued task whose remaining time is less than the service time when its turn
 *    comes is dropped, not started.
 * 3. **Sustained overload** (CoDel): when every task dequeued for `intervalMs` had waited more than
 *    `targetMs`, the queue is standing, not absorbing a burst. Then the wait admitted is also capped at
 *    `intervalMs` (a longer standing queue only adds latency: the drain rate is the same), and with `lifo` the
 *    newest requests are served first. Both end when the queue drains.
 */
export class Admission {
  /** Slots freed per ms, counted only while tasks waited (every slot busy). */
  private readonly drain = new DecayingRate(DRAIN_TAU_MS);
  /** How long a task holds its slot, ms. */
  readonly service = new Ewma(0.05);
  /** Since when every dequeued task waited longer than `targetMs`; `NaN` when the last one did not. */
  private aboveSince = Number.NaN;
  /** A sustained overload is on: the standing queue is capped, and served newest first with `lifo`. */
  overloaded = false;

  constructor(readonly settings: AdmissionSettings) {}

  /** Serving the newest requests first. */
  get lifo(): boolean {
    return this.overloaded && this.settings.lifo;
  }

  /** Slots freed per ms while work waits; `NaN` when nothing is known yet. */
  drainPerMs(limit: number): number {
    const measured = this.drain.perMs();
    if (measured === measured) return measured;
    const service = this.service.value;
    return service > 0 ? limit / service : Number.NaN;
  }

  /** The wait, ms, of a task with `ahead` tasks queued before it; `NaN` when unknown. */
  expectedWaitMs(ahead: number, limit: number): number {
    return (ahead + 1) / this.drainPerMs(limit);
  }

  /**
   * How many more tasks may queue behind `queued` others when their deadline is `remainingMs` away: the
   * queue the drain rate empties in time for each to run; `Infinity` while the rate is unknown.
   */
  room(queued: number, remainingMs: number, limit: number): number {
    const rate = this.drainPerMs(limit);
    if (!(rate > 0)) return Number.POSITIVE_INFINITY;
    const service = this.service.value;
    let wait = service === service ? remainingMs - service : remainingMs;
    if (this.overloaded && wait > this.settings.intervalMs) wait = this.settings.intervalMs;
    return Math.max(0, Math.floor(wait * rate) - queued);
  }

  /** Whether a task may start with `remainingMs` left: its expected service time fits. */
  canFinish(remainingMs: number): boolean {
    const service = this.service.value;
    return remainingMs > 0 && !(remainingMs < service);
  }

  /** A slot was freed at `now`, held `heldMs`; `waiting`: tasks were queued (it goes to one of them). */
  released(now: number, heldMs: number, waiting: boolean): void {
    if (heldMs >= 0) this.service.update(heldMs);
    if (waiting) this.drain.event(now);
    else this.drain.pause();
  }

  /** A queued task started at `now` after waiting `sojournMs` (CoDel's measurement). */
  dequeued(now: number, sojournMs: number): void {
    if (sojournMs < this.settings.targetMs) {
      this.aboveSince = Number.NaN;
      return;
    }
    const since = this.aboveSince;
    if (since !== since) this.aboveSince = now;
    else if (!this.overloaded && now - since >= this.settings.intervalMs) this.overloaded = true;
  }

  /** The queue is empty: whatever overload there was is over; arrival order again. */
  emptied(): void {
    this.aboveSince = Number.NaN;
    this.overloaded = false;
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
