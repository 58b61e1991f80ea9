import { describe, integer, rejectUnknown } from './validate';
import { LatencyWindow } from './latency';

/** Settings of {@link AdaptiveLimit}, every default applied (see `AdaptiveConcurrency` in types.ts). */
export interface AdaptiveLimitSettings {
  min: number;
  max: number;
  initial: number;
  /** Latency over the no-load level tolerated before the limit shrinks, as a ratio (1.1: 10 % more). */
  tolerance: number;
  /** Absolute latency tolerated on top, ms: timer and event-loop jitter, which would dominate sub-ms calls. */
  slackMs: number;
  /** Shortest window of samples between two decisions, ms (also at least twice the no-load latency). */
  windowMs: number;
  /** Fewest samples in a window. */
  minSamples: number;
  /** The no-load latency is the lowest window mean over the last two epochs of this length, ms. */
  relearnMs: number;
}

export const ADAPTIVE_DEFAULTS: AdaptiveLimitSettings = {
  min: 4,
  // The process-wide ceiling too: 1,000 closed-loop clients of three tasks each need 3,000 (with 1,024, and
  // `maxQueue` 1,024, a third of them were shed however healthy the dependency).
  max: 4096,
  initial: 32,
  tolerance: 1,
  slackMs: 5,
  windowMs: 50,
  minSamples: 10,
  relearnMs: 60_000,
};

/**
 * Above this share of a window's latency spent waiting for the event loop, the loop is the bottleneck: the
 * window says nothing reliable about the dependency, so the limit neither shrinks nor learns from it.
 */
export const LOOP_BOUND_SHARE = 0.5;
/** Below this share, a window's corrected latency may lower the no-load latency (see the class comment). */
const LOOP_CLEAN_SHARE = 0.25;
/** The slot limit is at most this many times the dependency's (a loop share of 31/32). */
const MAX_INFLATION = 32;

/**
 * A concurrency limit found from latency, in the manner of Netflix's Gradient2 and Envoy's gradient
 * controller. Every released slot is a sample of how long the task held it. Per window (at least `windowMs`
 * and twice the no-load latency, at least `minSamples` samples) the window's mean is compared with the no-load
 * latency (the lowest window mean seen recently):
 *
 *     gradient = clamp((tolerance × noLoad + slackMs) / mean, 0.5, 1)
 *     limit    = limit × gradient + √limit          (a decrease is taken by half)
 *
 * While latency stays near its no-load level the gradient is 1 and the limit grows by √limit per window; once
 * the downstream queues the calls it cannot serve, latency grows with every call over its capacity C and the
 * limit settles near `C × (tolerance + slackMs / noLoad) + √limit`, where the downstream's own queue stays
 * short. Halving each decrease keeps a window of inflated latency that is not the downstream queueing (an
 * event loop stalled by other work on the core) from collapsing the limit: a window costs at most a quarter
 * of it (measured in the bench: without it, a starved server's limit fell to 8 in front of a downstream of 32).
 * The limit does not grow while fewer than half its slots were used in the window: an idle limit proves nothing.
 *
 * **The dependency, not the loop.** A latency measured in JavaScript includes the time the reply waited for
 * the event loop: when the loop is busy (a surge of clients on a healthy downstream), every timer and socket
 * read fires late and every task looks slower. Read as the dependency queueing, that shrank the limit, the
 * queue overflowed, each 503 cost more loop time, and closed-loop clients came straight back: 200 clients on
 * three timers of 5-20 ms took the limit from 32 to 4 in 2.5 s with 99 % 503. So each sample comes with the
 * loop delay observed while the slot was held (the growth of the loop monitor's cumulative delay, loop-monitor.ts),
 * and per window:
 *
 * - `share` = loop delay / latency. The dependency's part is `mean × (1 − share)`; it drives the gradient.
 *   A sample's loop delay is the monitor's delay accrued during the hold (a stall), at most the loop's recent
 *   delay (a saturated loop is late at every tick of a long hold, while the reply waited for about one).
 * - Of every slot held, only that part is spent at the dependency; the rest the reply sits in the loop's queue,
 *   no longer the dependency's load. To let the dependency see `estimate` calls at once, the scheduler must
 *   therefore allow `estimate / (1 − share)` slots (Little's law on the two parts of the hold): the slot limit
 *   is the dependency's estimate inflated by that factor (at most {@link MAX_INFLATION}×). A busy loop raises
 *   the slot limit instead of lowering it; once the loop recovers, the factor returns to 1 within a window.
 * - With `share` ≥ {@link LOOP_BOUND_SHARE} the loop is the bottleneck: the gradient is taken as 1 (the
 *   estimate may grow while its slots are used, never shrink). The process's own door, not a dependency's
 *   limit, decides what the loop can take.
 *
 * Why this is sound: the loop's delay is measured by a timer that has nothing to do with the dependency (its
 * lateness is the delay every callback due then suffered), so a window's share can only be large when the loop
 * itself queues; capped by the recent delay, a slow dependency behind a saturated loop keeps most of its
 * latency as its own (measured: without the cap, a 3× overload on a loaded machine read as 90 % loop and let
 * the limit climb to its maximum). Where the estimate errs, it errs towards a smaller dependency latency: a
 * higher limit, never a collapse. The no-load latency, which every
 * later window is judged against, must not be learned too low (a timer-like dependency would then shrink the
 * limit to its minimum): it learns from the corrected mean only in windows where the loop took less than
 * a quarter, and from the raw mean (an overestimate) otherwise. A saturated dependency keeps its signal: its
 * queueing grows the latency, not the loop's delay, so its share falls and the gradient applies.
 *
 * The no-load latency cannot be observed while the limit keeps the downstream busy, so it is the lowest window
 * mean of the current and the previous epoch (`relearnMs` each): a downstream that became slower for good is
 * relearned within two epochs; in exchange, an overload that lasts longer than an epoch lets the limit take one
 * step up per epoch. (Envoy avoids that by probing at minimum concurrency now and then, which costs throughput
 * during the probe; not done here.)
 */
export class AdaptiveLimit {
  /** The current slot limit, an integer in [min, max]: the dependency's estimate times the loop's inflation. */
  limit: number;
  /** How many calls the dependency itself takes at once (what the gradient finds). */
  private estimate: number;
  /** Slots held per call at the dependency: 1 / (1 − the loop's share of the latency). */
  private inflation = 1;
  /** The loop delay summed over the window's samples, ms. */
  private loopSum = 0;
  private noLoad = Number.POSITIVE_INFINITY;
  private epochMin = Number.POSITIVE_INFINITY;
  private previousEpochMin = Number.POSITIVE_INFINITY;
  private epochStart: number;
  private readonly window: LatencyWindow;

  constructor(
    readonly settings: AdaptiveLimitSettings,
    now: number,
  ) {
    this.estimate = Math.min(settings.max, Math.max(settings.min, settings.initial));
    this.limit = Math.floor(this.estimate);
    this.window = new LatencyWindow(now);
    this.epochStart = now;
  }

  /** The latency the limit treats as no-load, ms (`Infinity` before the first window). */
  get noLoadMs(): number {
    return this.noLoad;
  }

  /** Slots held per call at the dependency (1 while the loop adds nothing). */
  get loopInflation(): number {
    return this.inflation;
  }

  /**
   * A task held its slot for `ms`, with `inFlight` tasks holding one (itself included), of which `loopMs` the
   * event loop was late (see the class comment). Returns whether the limit changed.
   */
  sample(now: number, ms: number, inFlight: number, loopMs = 0): boolean {
    const w = this.window;
    const s = this.settings;
    w.add(ms, inFlight);
    this.loopSum += loopMs < ms ? loopMs : ms;
    if (w.count < s.minSamples) return false;
    const length =
      this.noLoad === Number.POSITIVE_INFINITY ? s.windowMs : Math.max(s.windowMs, 2 * this.noLoad);
    if (now - w.startedAt < length) return false;
    const mean = w.mean;
    const busy = w.maxInFlight;
    const share = mean > 0 ? this.loopSum / w.sum : 0;
    w.reset(now);
    this.loopSum = 0;
    return this.decide(now, mean, busy, share);
  }

  private decide(now: number, mean: number, busy: number, share: number): boolean {
    const s = this.settings;
    if (now - this.epochStart >= s.relearnMs) {
      this.previousEpochMin = this.epochMin;
      this.epochMin = Number.POSITIVE_INFINITY;
      this.epochStart = now;
    }
    const dependency = mean * (1 - share);
    const learned = share < LOOP_CLEAN_SHARE ? dependency : mean;
    if (learned < this.epochMin) this.epochMin = learned;
    this.noLoad = Math.min(this.epochMin, this.previousEpochMin);
    const gradient =
      share >= LOOP_BOUND_SHARE
        ? 1
        : Math.min(1, Math.max(0.5, (s.tolerance * this.noLoad + s.slackMs) / dependency));
    this.inflation = 1 / Math.max(1 - share, 1 / MAX_INFLATION);
    const estimate = this.estimate;
    let next = estimate * gradient + Math.sqrt(estimate);
    // Slots used: compared with the slot limit (a busy loop holds more slots per call at the dependency).
    if (next > estimate && busy < this.limit / 2) next = estimate;
    // Half of each decrease: one window of inflated latency (a stall of the event loop, not the downstream)
    // costs at most a quarter of the limit.
    else if (next < estimate) next = estimate + (next - estimate) / 2;
    next = Math.min(s.max, Math.max(s.min, next));
    this.estimate = next;
    const limit = Math.floor(Math.min(s.max, next * this.inflation));
    if (limit === this.limit) return false;
    this.limit = limit;
    return true;
  }
}

const ADAPTIVE_KNOWN: readonly (keyof AdaptiveLimitSettings)[] = [
  'min',
  'max',
  'initial',
  'tolerance',
  'slackMs',
  'windowMs',
  'minSamples',
  'relearnMs',
];

/**
 * The `concurrency` option: a fixed number, `'adaptive'`, or `{ adaptive: { min, max, … } }`. Returns the
 * process-wide cap (the adaptive limit's `max`) and the adaptive settings, or `false` for a fixed limit.
 */
export function resolveConcurrency(
  value: unknown,
  fallback: number | 'adaptive',
): { concurrency: number; adaptive: AdaptiveLimitSettings | false } {
  if (value === undefined) value = fallback;
  if (value === 'adaptive') return { concurrency: ADAPTIVE_DEFAULTS.max, adaptive: { ...ADAPTIVE_DEFAULTS } };
  if (typeof value === 'number') {
    return { concurrency: integer('concurrency', value, 1, Number.MAX_SAFE_INTEGER), adaptive: false };
  }
  if (typeof value !== 'object' || value === null || !('adaptive' in value)) {
    throw new TypeError(
      `Expected \`concurrency\` to be an integer >= 1, \`'adaptive'\` or \`{ adaptive: { min, max, … } }\`, got ${describe(value)}`,
    );
  }
  rejectUnknown(value, ['adaptive'], 'concurrency.');
  const given = (value as { adaptive: unknown }).adaptive;
  if (given === true || given === undefined) return resolveConcurrency('adaptive', fallback);
  if (typeof given !== 'object' || given === null) {
    throw new TypeError(`Expected \`concurrency.adaptive\` to be an object, got ${describe(given)}`);
  }
  rejectUnknown(given, ADAPTIVE_KNOWN, 'concurrency.adaptive.');
  const o = given as Partial<AdaptiveLimitSettings>;
  const d = ADAPTIVE_DEFAULTS;
  const name = (key: string) => `concurrency.adaptive.${key}`;
  const int = (key: keyof AdaptiveLimitSettings, min: number): number => {
    const v = o[key];
    return v === undefined ? d[key] : integer(name(key), v, min, Number.MAX_SAFE_INTEGER);
  };
  const min = int('min', 1);
  const max = o.max === undefined ? Math.max(d.max, min) : int('max', min);
  const initial = o.initial === undefined ? Math.min(max, Math.max(min, d.initial)) : int('initial', min);
  if (initial > max) {
    throw new TypeError(
      `Expected \`${name('initial')}\` (${initial}) to be at most \`${name('max')}\` (${max})`,
    );
  }
  const tolerance = o.tolerance === undefined ? d.tolerance : o.tolerance;
  if (typeof tolerance !== 'number' || !(tolerance >= 1 && tolerance <= 10)) {
    throw new TypeError(
      `Expected \`${name('tolerance')}\` to be a number from 1 to 10, got ${describe(tolerance)}`,
    );
  }
  return {
    concurrency: max,
    adaptive: {
      min,
      max,
      initial,
      tolerance,
      slackMs: int('slackMs', 0),
      windowMs: int('windowMs', 1),
      minSamples: int('minSamples', 1),
      relearnMs: int('relearnMs', 1),
    },
  };
}
