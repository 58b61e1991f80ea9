/**
 * Small latency and rate estimators. None reads a clock or sets a timer: the caller passes the time (ms, any
 * monotonic origin), so they cost a few arithmetic operations per sample and are deterministic under test.
 * The scheduler feeds them once per released slot.
 */

/** An exponentially weighted moving average of samples; `NaN` until the first one. */
export class Ewma {
  value = Number.NaN;

  /** @param weight the share of each new sample, in (0, 1]: about 1 / (samples remembered). */
  constructor(readonly weight: number) {}

  update(sample: number): number {
    const value = this.value;
    return (this.value = value === value ? value + this.weight * (sample - value) : sample);
  }

  get ready(): boolean {
    return this.value === this.value;
  }
}

/**
 * The rate of events (per ms) over the recent past, each event's weight decaying with time constant `tauMs`:
 * after a step in the true rate the estimate has moved 63 % of the way in `tauMs`. Only time spent "observing"
 * counts: {@link pause} stops the clock (the scheduler measures its drain rate only while work is waiting, when
 * every slot is busy and slots free at the rate the downstream serves; idle time says nothing about it).
 */
export class DecayingRate {
  private rate = 0;
  private last = Number.NaN;
  /** Observed time so far, for the start-up correction (capped: it only matters for the first few `tauMs`). */
  private observedMs = 0;

  constructor(readonly tauMs: number) {}

  /** One event at `now`. */
  event(now: number): void {
    const last = this.last;
    if (last === last) {
      const dt = now > last ? now - last : 0;
      this.rate *= Math.exp(-dt / this.tauMs);
      if (this.observedMs < 8 * this.tauMs) this.observedMs += dt;
    }
    this.rate += 1 / this.tauMs;
    this.last = now;
  }

  /** The time since the last event, until the next one, does not count (nothing was observed). */
  pause(): void {
    this.last = Number.NaN;
  }

  /** Events per ms; `NaN` until `minObservedMs` of observation. */
  perMs(minObservedMs = this.tauMs / 4): number {
    if (this.observedMs < minObservedMs) return Number.NaN;
    // Corrected for the start: over T ms of observation of a steady rate r, the sum holds r(1 - e^(-T/tau)).
    return this.rate / (1 - Math.exp(-this.observedMs / this.tauMs));
  }
}

/** Samples gathered over a window: their count, mean and minimum; reset when the window is used. */
export class LatencyWindow {
  count = 0;
  sum = 0;
  min = Number.POSITIVE_INFINITY;
  /** The most tasks in flight seen while the window was open. */
  maxInFlight = 0;
  startedAt: number;

  constructor(now: number) {
    this.startedAt = now;
  }

  add(ms: number, inFlight: number): void {
    this.count++;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (inFlight > this.maxInFlight) this.maxInFlight = inFlight;
  }

  get mean(): number {
    return this.count === 0 ? Number.NaN : this.sum / this.count;
  }

  reset(now: number): void {
    this.count = 0;
    this.sum = 0;
    this.min = Number.POSITIVE_INFINITY;
    this.maxInFlight = 0;
    this.startedAt = now;
  }
}

/**
 * The recent distribution of one kind of sample (a task name's latency): the last `size` samples in a ring and
 * their quantiles (nearest rank). The ring is sorted again only once an eighth of its samples are new, so a read
 * costs O(1) most of the time and a sort of `size` numbers now and then; in between, a read answers from the
 * samples of the last sort.
 */
export class PercentileWindow {
  /** Samples held, at most `size`. */
  count = 0;
  private readonly ring: Float64Array;
  private next = 0;
  private sorted: Float64Array | null = null;
  /** Samples added since the last sort. */
  private fresh = 0;

  constructor(readonly size = 128) {
    this.ring = new Float64Array(size);
  }

  add(ms: number): void {
    this.ring[this.next] = ms;
    this.next = this.next + 1 === this.size ? 0 : this.next + 1;
    if (this.count < this.size) this.count++;
    this.fresh++;
  }

  /** The `q` quantile (0 to 1) of the samples held; `NaN` without samples. */
  quantile(q: number): number {
    const n = this.count;
    if (n === 0) return Number.NaN;
    let sorted = this.sorted;
    if (sorted === null || this.fresh * 8 >= n) {
      sorted = this.sorted = this.ring.slice(0, n).sort();
      this.fresh = 0;
    }
    // The rank within the sorted copy, which may hold fewer samples than the ring does by now (while it fills).
    const m = sorted.length;
    return sorted[Math.min(m, Math.max(1, Math.ceil(q * m))) - 1]!;
  }
}
