import { OverloadedError, quietly } from './errors';
import { describe, integer, rejectUnknown } from './validate';

/** Settings of {@link Door}, every default applied (see `EventLoopOptions` in types.ts). */
export interface DoorSettings {
  /** CoDel's target on the loop's delay, ms: above it for `intervalMs` without a break, the loop is hot. */
  targetMs: number;
  intervalMs: number;
  /** Event-loop utilisation (0..1) from which the loop counts as busy. */
  utilization: number;
}

export const DOOR_DEFAULTS: DoorSettings = { targetMs: 10, intervalMs: 50, utilization: 0.9 };

/** What the door reads of the event loop (`LoopMonitor` in loop-monitor.ts has it). */
export interface LoopSignal {
  /** The loop's recent queueing delay, ms, a stall in progress included. */
  recentDelayMs(now?: number): number;
  /** Event-loop utilisation over the last ~100 ms (0..1). */
  utilization(): number;
}

/** Completions are counted in buckets of this length, ms … */
const BUCKET_MS = 100;
/** … over this many buckets: "recent" is the last second. */
const BUCKETS = 10;
/** The rate of the bucket being filled is read over at least this long, ms (its first few ms say little). */
const MIN_PARTIAL_MS = 50;
/**
 * A request is admitted if its expected time in the process, this many times over, still fits its budget:
 * Little's law gives the mean, and requests admitted at the edge should not all end as 504s.
 */
const LATENCY_MARGIN = 1.25;
/** Requests pile up when more than this many times those completed arrived in the last second. */
const PILE_UP = 1.25;
/** … and at least this many arrived: a few requests are no pile (and a lightly loaded process sheds nothing). */
const MIN_PILE = 10;
/** The no-load latency is the lowest bucket mean of the last two epochs of this length, ms. */
const LATENCY_EPOCH_MS = 10_000;
/** After a shed, requests are judged for this long whatever the loop's state, ms (go-zero's cool-off). */
const COOL_OFF_MS = 1000;
/** A stall of this long is a busy loop whatever the utilisation last measured (it is measured every ~100 ms). */
const STALL_IS_BUSY_MS = 100;

/**
 * The process's own door: when the event loop itself is the queue, new requests are shed at once (503,
 * `Retry-After`), before anything per-request is built, but only while the time they would spend in the process
 * breaks their budget. go-zero's adaptive shedder is the model: it sheds only when the CPU is busy AND the
 * requests in flight exceed what the recent best throughput times the best latency says fits (Little's law), so
 * a load the machine still serves is never shed.
 *
 * **When it judges.** While the loop is hot and busy:
 * - *hot* (CoDel on the monitor's delay): the delay stayed above `targetMs` for `intervalMs`; it cools once the
 *   delay stayed below `targetMs` for `intervalMs` again: hysteresis, not a threshold that flaps with every
 *   reading. A timer late by `d` means callbacks have waited past the target for `d - targetMs`: a stall in
 *   progress counts at once.
 * - *busy*: utilisation at least `utilization` (or a stall of 100 ms in progress). A loop late because the machine
 *   descheduled the process is not a queue that shedding empties.
 * And, as go-zero's cool-off, for a second after any shed, whatever the loop: load comes in waves (clients
 * retrying together, timers in lockstep), and between two the loop catches up and looks idle.
 *
 * **Whom it sheds.** A request is shed when both
 * - more is in flight than fits: the requests between this door and the end of their response reach the best
 *   completions per ms of the last second times the no-load latency (the lowest bucket mean of the last 10-20 s;
 *   the last second's would follow an overload up and let ever more in), and
 * - Little's law says the new one would not make it: `(in flight + 1) / rate`, the time the queue ahead of it
 *   takes to drain at the rate the process answers (the last second's mean), times 1.25, exceeds its budget (with nothing completed
 *   in the last second, the loop's delay stands for it).
 * The loop's delay alone sheds nothing: a process the machine descheduled for a second comes back late by a
 * second, and can answer within the budget again at once.
 * A closed-loop surge of clients on a healthy downstream keeps `clients / rate` in flight, inside the budget: it
 * is never shed, however busy the loop (shedding it would only bring the clients straight back, and cost loop
 * time). The rate is only known once something completed under load: until the requests' own latency confirms
 * the overload (in flight for an eighth of the budget on average, completing in half of it, or a loop half a
 * budget late) while requests pile up (more arrived in the last second than 1.25 times those that completed; a
 * closed loop of clients that the machine stalls does not pile up), nothing is shed on the estimate alone; once
 * confirmed, Little's law decides until the door stops judging.
 *
 * Deciding costs a clock read and a few comparisons while the door does not judge; a shed request costs one
 * small error object without a stack (and whatever the app's error handler does with it).
 */
export class Door {
  /** Requests admitted whose response has not ended yet. */
  inFlight = 0;
  /** Requests shed by the door. */
  shed = 0;
  /** The sum of the arrival times of the requests in flight (their mean age is `now - arrivals / inFlight`). */
  private arrivals = 0;
  /** The last delay read, ms. */
  delayMs = 0;
  private hot = false;
  /** While judging: the requests' own latency confirmed the overload; Little's law alone decides until it ends. */
  private confirmed = false;
  /** When the last request was shed, ms. */
  private shedAt = Number.NEGATIVE_INFINITY;
  /** Since when the delay stayed above `targetMs` (`NaN`: it is not); while hot, since when it stayed below. */
  private aboveSince = Number.NaN;
  private calmSince = Number.NaN;
  /** Completions and their summed latency per bucket; `bucket` is the index (time / BUCKET_MS) being filled. */
  private readonly counts = new Float64Array(BUCKETS);
  private readonly sums = new Float64Array(BUCKETS);
  /** Requests that came to the door per bucket, admitted or shed; whether requests were in flight in it. */
  private readonly arrived = new Float64Array(BUCKETS);
  private readonly busy = new Uint8Array(BUCKETS);
  private bucket: number;
  /** Best completions per ms of the full buckets in the window, and the no-load latency; 0 and NaN when unknown. */
  private bestRate = 0;
  /** Mean completions per ms of the full buckets in the window that had requests in flight. */
  private meanRate = 0;
  private bestLatency = Number.NaN;
  /** The lowest mean latency of a bucket in this epoch and in the last, ms; since when this epoch runs. */
  private epochLatency = Number.NaN;
  private lastEpochLatency = Number.NaN;
  private epochAt = 0;
  /** The latency of recent completions, ms (an EWMA over ~5: it must follow a queue that builds). */
  private recentLatency = Number.NaN;

  constructor(
    readonly settings: DoorSettings,
    private readonly loop: LoopSignal,
    now: number,
  ) {
    this.bucket = Math.floor(now / BUCKET_MS);
    this.epochAt = now;
  }

  /**
   * Reads the loop at `now` and moves the hot/cool state; true when the door must judge requests (hot and
   * busy). Cheap: the caller asks for a request's budget only when this is true.
   */
  judging(now: number): boolean {
    const { targetMs, intervalMs } = this.settings;
    const delay = (this.delayMs = this.loop.recentDelayMs(now));
    if (delay > targetMs) {
      this.calmSince = Number.NaN;
      if (!this.hot) {
        // A timer late by `delay` means callbacks have waited longer than the target for `delay - targetMs`.
        if (this.aboveSince !== this.aboveSince) this.aboveSince = now - (delay - targetMs);
        if (now - this.aboveSince >= intervalMs) this.hot = true;
      }
    } else {
      this.aboveSince = Number.NaN;
      if (this.hot) {
        if (this.calmSince !== this.calmSince) this.calmSince = now;
        else if (now - this.calmSince >= intervalMs) {
          this.hot = false;
          this.calmSince = Number.NaN;
        }
      }
    }
    if (this.hot && (this.loop.utilization() >= this.settings.utilization || delay >= STALL_IS_BUSY_MS)) {
      return true;
    }
    // go-zero's cool-off: for a while after a shed, every request is still judged, busy loop or not. Bursts
    // come in waves (clients retrying together, timers in lockstep); between two, the loop catches up and
    // looks idle, and without this the next wave would be let in whole, to wait behind itself.
    if (now - this.shedAt < COOL_OFF_MS) return true;
    this.confirmed = false;
    return false;
  }

  /**
   * Whether a request with `budgetMs` is admitted at `now`, the door judging (see {@link judging}); counts the
   * shed. Returns the expected time in the process, ms, that broke the budget, or `NaN` when admitted.
   */
  judge(now: number, budgetMs: number): number {
    this.roll(now);
    const delay = this.delayMs;
    const rate = this.rateAt(now);
    // Nothing completed in the last second: the loop's own delay is all that is known of the wait.
    const expected = rate > 0 ? (this.inFlight + 1) / rate : delay;
    const best = this.bestRate > rate ? this.bestRate : rate;
    const fits = this.bestLatency === this.bestLatency ? best * this.bestLatency : 0;
    let breaks = this.inFlight >= fits && expected * LATENCY_MARGIN > budgetMs;
    if (breaks && !this.confirmed) {
      // Little's law gives the steady state; just after a surge began the rate is still being measured.
      // Requests that wait long (in flight for an eighth of the budget on average, or completed in half of
      // it), or a loop half a budget late, confirm the overload, until the door stops judging.
      // And the requests must be piling up: more arrived in the last second than completed. A closed loop of
      // clients sends only as answers come back; when the machine stalls it, its requests are late, but
      // shedding them would only bring them straight back.
      const meanAge = this.inFlight > 0 ? now - this.arrivals / this.inFlight : 0;
      breaks = this.confirmed =
        (delay * 2 >= budgetMs || meanAge * 8 >= budgetMs || !(this.recentLatency * 2 < budgetMs)) &&
        this.pilingUp();
    }
    if (!breaks) return Number.NaN;
    this.shed++;
    this.shedAt = now;
    this.arrived[this.bucket % BUCKETS]!++;
    return Math.max(expected, delay);
  }

  /**
   * The door at a request's arrival, at `now`: `undefined` when it is admitted, else the error to answer it with.
   * `budgetOf(header)` (the request's budget from its budget header) is computed only while the door judges. The caller counts an admitted request in flight
   * ({@link entered}) and out ({@link left}) once, when its response ends (scope.ts: the request's one 'close'
   * listener does both).
   */
  enter<H>(now: number, header: H, budgetOf: (header: H) => number): OverloadedError | undefined {
    if (this.judging(now)) {
      const budget = budgetOf(header);
      const expected = this.judge(now, budget);
      if (expected === expected) return this.error(expected, budget);
    }
    return undefined;
  }

  /** A request was admitted at `now`. */
  entered(now: number): void {
    this.inFlight++;
    this.arrivals += now;
    this.roll(now);
    const i = this.bucket % BUCKETS;
    this.arrived[i]!++;
    this.busy[i] = 1;
  }

  /** A request admitted at `arrivedAt` ended (its response finished or closed) at `now`. */
  left(now: number, arrivedAt: number): void {
    // At zero the sum restarts exactly: rounding cannot accumulate over a long run.
    this.arrivals = --this.inFlight === 0 ? 0 : this.arrivals - arrivedAt;
    this.roll(now);
    const i = this.bucket % BUCKETS;
    const latency = now - arrivedAt;
    this.counts[i]!++;
    this.busy[i] = 1;
    this.sums[i]! += latency;
    const recent = this.recentLatency;
    this.recentLatency = recent === recent ? recent + 0.2 * (latency - recent) : latency;
  }

  /** `stats().eventLoop` at `now`: the loop is read afresh (the door may have cooled since the last request). */
  stats(now: number): {
    delayMs: number;
    utilization: number;
    shedding: boolean;
    shed: number;
    inFlight: number;
  } {
    this.judging(now);
    return {
      delayMs: this.delayMs,
      utilization: this.loop.utilization(),
      shedding: now - this.shedAt < this.settings.intervalMs,
      shed: this.shed,
      inFlight: this.inFlight,
    };
  }

  /**
   * At least {@link MIN_PILE} requests arrived in the window (this one included), and more than PILE_UP times
   * those that completed. A loop stalled with nothing arriving is late, not piling up.
   */
  private pilingUp(): boolean {
    let arrived = 1;
    let completed = 0;
    for (let i = 0; i < BUCKETS; i++) {
      arrived += this.arrived[i]!;
      completed += this.counts[i]!;
    }
    return arrived >= MIN_PILE && arrived > PILE_UP * completed;
  }

  /**
   * The rate the requests in flight drain at, per ms: the mean of the full buckets of the window that had
   * requests in flight (an idle one says nothing of it; and not the best: the best of ten noisy buckets is an
   * overestimate, and would let in a queue longer than the budget), or the bucket being filled if it does
   * better (a load that is still rising).
   */
  private rateAt(now: number): number {
    const elapsed = now - this.bucket * BUCKET_MS;
    const partial = this.counts[this.bucket % BUCKETS]! / Math.max(elapsed, MIN_PARTIAL_MS);
    return partial > this.meanRate ? partial : this.meanRate;
  }

  /** Moves the window to `now`: buckets that ended are summarised, buckets that start are emptied. */
  private roll(now: number): void {
    const bucket = Math.floor(now / BUCKET_MS);
    if (bucket <= this.bucket) return;
    const steps = Math.min(bucket - this.bucket, BUCKETS);
    for (let k = 1; k <= steps; k++) {
      const i = (bucket - steps + k) % BUCKETS;
      this.counts[i] = 0;
      this.sums[i] = 0;
      this.arrived[i] = 0;
      // Requests still in flight when a bucket starts make it busy; an idle one says nothing of the rate.
      this.busy[i] = this.inFlight > 0 ? 1 : 0;
    }
    this.bucket = bucket;
    let bestCount = 0;
    let total = 0;
    let busy = 0;
    let bestLatency = Number.NaN;
    for (let i = 0; i < BUCKETS; i++) {
      if (i === bucket % BUCKETS) continue;
      busy += this.busy[i]!;
      const count = this.counts[i]!;
      if (count === 0) continue;
      total += count;
      if (count > bestCount) bestCount = count;
      const mean = this.sums[i]! / count;
      if (!(mean >= bestLatency)) bestLatency = mean;
    }
    this.bestRate = bestCount / BUCKET_MS;
    this.meanRate = busy > 0 ? total / (busy * BUCKET_MS) : 0;
    // The best latency is the no-load one: the lowest of this epoch and the last. The window's own minimum
    // would follow an overload up (every bucket slow), let more in, and feed itself.
    if (now - this.epochAt >= LATENCY_EPOCH_MS) {
      this.epochAt = now;
      this.lastEpochLatency = this.epochLatency;
      this.epochLatency = Number.NaN;
    }
    if (!(bestLatency >= this.epochLatency)) this.epochLatency = bestLatency;
    const last = this.lastEpochLatency;
    this.bestLatency = last < this.epochLatency ? last : this.epochLatency;
  }

  /** The error a shed request is answered with (no stack: shedding must stay cheap). */
  error(expectedMs: number, budgetMs: number): OverloadedError {
    const delay = Math.round(this.delayMs);
    return quietly(
      () =>
        new OverloadedError(
          [],
          `the event loop is ${delay} ms behind and the ${this.inFlight} requests in flight would keep this ` +
            `one ~${Math.round(expectedMs)} ms, over its ${budgetMs} ms budget`,
        ),
    );
  }
}

const KEYS = ['targetMs', 'intervalMs', 'utilization'];

/** The `eventLoop` option: `false` (no door) or `{ targetMs, intervalMs, utilization }`. */
export function resolveDoor(value: unknown): DoorSettings | false {
  if (value === undefined) return { ...DOOR_DEFAULTS };
  if (value === false) return false;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`Expected \`eventLoop\` to be an object or \`false\`, got ${describe(value)}`);
  }
  rejectUnknown(value, KEYS, 'eventLoop.');
  const o = value as Partial<Record<keyof DoorSettings, unknown>>;
  const u = o.utilization;
  if (u !== undefined && (typeof u !== 'number' || !(u >= 0 && u <= 1))) {
    throw new TypeError(`Expected \`eventLoop.utilization\` to be a number from 0 to 1, got ${describe(u)}`);
  }
  return {
    targetMs:
      o.targetMs === undefined ? DOOR_DEFAULTS.targetMs : integer('eventLoop.targetMs', o.targetMs, 1),
    intervalMs:
      o.intervalMs === undefined
        ? DOOR_DEFAULTS.intervalMs
        : integer('eventLoop.intervalMs', o.intervalMs, 1),
    utilization: (u as number | undefined) ?? DOOR_DEFAULTS.utilization,
  };
}
