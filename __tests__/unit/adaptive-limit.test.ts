import {
  ADAPTIVE_DEFAULTS,
  AdaptiveLimit,
  resolveConcurrency,
  type AdaptiveLimitSettings,
} from '../../lib/adaptive-limit';

/**
 * A deterministic simulation, no real time: a downstream that serves `capacity(t)` calls at once, `serviceMs`
 * each, and queues the rest in arrival order (a database pool); a client that keeps `min(limit, demand)` calls
 * in flight. Each completed call is a sample of its latency (downstream queue + service), as the scheduler's
 * release of a slot is. Returns the limit and the mean latency every 100 ms.
 */
function simulate(
  limiter: AdaptiveLimit,
  opts: { capacity: (t: number) => number; serviceMs: number; durationMs: number; demand?: number },
): { t: number; limit: number; latency: number }[] {
  const demand = opts.demand ?? Number.POSITIVE_INFINITY;
  let now = 0;
  let inFlight = 0;
  let serving = 0;
  const waiting: number[] = []; // issue times of calls queued in the downstream
  const completions: { at: number; issued: number }[] = []; // in time order: service time is constant
  let head = 0;
  const trace: { t: number; limit: number; latency: number }[] = [];
  let bucketSum = 0;
  let bucketN = 0;
  let nextTrace = 100;

  const startWaiting = (): void => {
    while (waiting.length > 0 && serving < opts.capacity(now)) {
      serving++;
      completions.push({ at: now + opts.serviceMs, issued: waiting.shift()! });
    }
  };
  const issue = (): void => {
    while (inFlight < Math.min(limiter.limit, demand)) {
      inFlight++;
      waiting.push(now);
    }
    startWaiting();
  };

  issue();
  while (now < opts.durationMs && head < completions.length) {
    const done = completions[head++]!;
    now = done.at;
    while (now >= nextTrace) {
      trace.push({ t: nextTrace, limit: limiter.limit, latency: bucketN ? bucketSum / bucketN : NaN });
      bucketSum = bucketN = 0;
      nextTrace += 100;
    }
    serving--;
    const latency = now - done.issued;
    bucketSum += latency;
    bucketN++;
    limiter.sample(now, latency, inFlight);
    inFlight--;
    issue();
  }
  return trace;
}

const settings = (overrides: Partial<AdaptiveLimitSettings> = {}): AdaptiveLimitSettings => ({
  ...ADAPTIVE_DEFAULTS,
  ...overrides,
});

const between = (from: number, to: number, trace: ReturnType<typeof simulate>) =>
  trace.filter((p) => p.t >= from && p.t < to);

describe('AdaptiveLimit', () => {
  it('settles just above a downstream that serves 32 at once, where its queue stays short', () => {
    const limiter = new AdaptiveLimit(settings(), 0);
    const trace = simulate(limiter, { capacity: () => 32, serviceMs: 50, durationMs: 20_000 });
    const late = between(5_000, 20_000, trace);
    for (const p of late) {
      expect(p.limit).toBeGreaterThanOrEqual(32);
      expect(p.limit).toBeLessThanOrEqual(48);
      expect(p.latency).toBeLessThanOrEqual(50 * 1.5);
    }
    expect(limiter.noLoadMs).toBeCloseTo(50, 0);
  });

  it('grows while latency stays at its no-load level, up to `max`', () => {
    const limiter = new AdaptiveLimit(settings({ max: 300 }), 0);
    const trace = simulate(limiter, { capacity: () => 10_000, serviceMs: 10, durationMs: 3_000 });
    expect(between(0, 200, trace)[0]!.limit).toBeLessThan(100);
    expect(trace.at(-1)!.limit).toBe(300);
  });

  it('shrinks when the capacity halves, and grows back when it recovers', () => {
    const limiter = new AdaptiveLimit(settings(), 0);
    const capacity = (t: number) => (t >= 10_000 && t < 20_000 ? 16 : 32);
    const trace = simulate(limiter, { capacity, serviceMs: 50, durationMs: 30_000 });
    const before = between(8_000, 10_000, trace).map((p) => p.limit);
    const halved = between(13_000, 20_000, trace).map((p) => p.limit);
    const recovered = between(25_000, 30_000, trace).map((p) => p.limit);
    expect(Math.min(...before)).toBeGreaterThanOrEqual(32);
    expect(Math.max(...halved)).toBeLessThanOrEqual(28);
    expect(Math.min(...halved)).toBeGreaterThanOrEqual(16);
    expect(Math.min(...recovered)).toBeGreaterThanOrEqual(32);
    // Within about a second of each step (ten windows of 100 ms).
    expect(between(11_000, 12_000, trace).every((p) => p.limit <= 30)).toBe(true);
    expect(between(21_500, 22_500, trace).every((p) => p.limit >= 30)).toBe(true);
  });

  it('does not grow while the work in flight uses less than half the limit', () => {
    const limiter = new AdaptiveLimit(settings({ initial: 40 }), 0);
    simulate(limiter, { capacity: () => 1000, serviceMs: 20, durationMs: 5_000, demand: 10 });
    expect(limiter.limit).toBe(40);
  });

  it('stays within min and max', () => {
    const low = new AdaptiveLimit(settings({ min: 12, initial: 20 }), 0);
    simulate(low, { capacity: () => 2, serviceMs: 50, durationMs: 10_000 });
    expect(low.limit).toBe(12);
    const high = new AdaptiveLimit(settings({ max: 50 }), 0);
    simulate(high, { capacity: () => 1000, serviceMs: 5, durationMs: 10_000 });
    expect(high.limit).toBe(50);
  });

  it('relearns a downstream that became slower for good within two epochs', () => {
    const limiter = new AdaptiveLimit(settings({ relearnMs: 5_000 }), 0);
    simulate(limiter, { capacity: () => 32, serviceMs: 20, durationMs: 5_000 });
    expect(limiter.noLoadMs).toBeCloseTo(20, 0);
    // Same limiter, the downstream now takes 60 ms a call (the clock continues from 5 s).
    const slower = simulateFrom(limiter, 5_000, 20_000, 60);
    expect(limiter.noLoadMs).toBeGreaterThan(55);
    expect(slower).toBeGreaterThanOrEqual(32);
  });
});

describe('AdaptiveLimit: the dependency, not the loop', () => {
  /**
   * Feeds `windows` windows of 10 samples, 50 ms apart, each task `depMs` at the dependency plus `loopMs` of
   * event-loop delay, with `inFlight` slots busy. Returns the limit after each window.
   */
  const feed = (
    limiter: AdaptiveLimit,
    from: number,
    o: { windows: number; depMs: number; loopMs: number; inFlight: (limit: number) => number; seen?: number },
  ): number[] => {
    const limits: number[] = [];
    for (let w = 0; w < o.windows; w++) {
      const t = from + w * 50;
      for (let i = 0; i < 10; i++) {
        const ms = o.depMs + o.loopMs;
        limiter.sample(t + i * 5, ms, o.inFlight(limiter.limit), o.seen ?? o.loopMs);
      }
      limits.push(limiter.limit);
    }
    return limits;
  };

  it('does not shrink when a busy loop, not the dependency, makes every task slower (the healthy surge)', () => {
    const limiter = new AdaptiveLimit(settings(), 0);
    feed(limiter, 0, { windows: 20, depMs: 20, loopMs: 0, inFlight: () => 10 });
    const before = limiter.limit;
    expect(before).toBe(ADAPTIVE_DEFAULTS.initial);
    // The loop now adds 80 ms to every 20 ms call: the share of the loop is 0.8.
    const during = feed(limiter, 1_000, { windows: 40, depMs: 20, loopMs: 80, inFlight: (l) => l });
    expect(Math.min(...during)).toBeGreaterThanOrEqual(before);
    // Slots are held five times as long per call at the dependency: the slot limit makes room for that.
    expect(limiter.loopInflation).toBeCloseTo(5, 6);
    expect(limiter.limit).toBeGreaterThanOrEqual(5 * before);
    // The no-load latency was not learned from the inflated windows.
    expect(limiter.noLoadMs).toBeCloseTo(20, 6);
    // The loop recovers: the inflation goes within a window or two, the dependency's estimate stays.
    const after = feed(limiter, 3_000, { windows: 3, depMs: 20, loopMs: 0, inFlight: () => 0 });
    expect(limiter.loopInflation).toBe(1);
    expect(after.at(-1)!).toBeLessThan(during.at(-1)!);
  });

  it('collapses to its minimum when the loop delay is not taken out (the bug this fixes)', () => {
    const limiter = new AdaptiveLimit(settings(), 0);
    feed(limiter, 0, { windows: 20, depMs: 20, loopMs: 0, inFlight: (l) => l });
    // Same latencies, but the loop's share is not known (as before the loop monitor).
    const during = feed(limiter, 1_000, { windows: 40, depMs: 20, loopMs: 80, inFlight: (l) => l, seen: 0 });
    expect(during.at(-1)).toBe(ADAPTIVE_DEFAULTS.min);
  });

  it('still shrinks for a saturated dependency while the loop adds a little', () => {
    const limiter = new AdaptiveLimit(settings(), 0);
    feed(limiter, 0, { windows: 20, depMs: 50, loopMs: 0, inFlight: (l) => l });
    const before = limiter.limit;
    // The dependency queues (150 ms a call), the loop adds 10 ms: its share is small.
    const during = feed(limiter, 2_000, { windows: 10, depMs: 150, loopMs: 10, inFlight: (l) => l });
    expect(during.at(-1)!).toBeLessThan(before / 2);
  });

  it('learns the no-load latency from the raw mean when the loop took a large share (never too low)', () => {
    const limiter = new AdaptiveLimit(settings(), 0);
    // From the start the loop takes 40 % of each 50 ms: the corrected 30 ms may understate the dependency.
    feed(limiter, 0, { windows: 10, depMs: 30, loopMs: 20, inFlight: (l) => l });
    expect(limiter.noLoadMs).toBeCloseTo(50, 6);
  });
});

/** Continues a limiter's life at a later clock: a downstream of 32 at `serviceMs`; returns the final limit. */
function simulateFrom(limiter: AdaptiveLimit, from: number, to: number, serviceMs: number): number {
  const shifted = {
    get limit() {
      return limiter.limit;
    },
    sample: (t: number, ms: number, n: number) => limiter.sample(t + from, ms, n),
  } as unknown as AdaptiveLimit;
  simulate(shifted, { capacity: () => 32, serviceMs, durationMs: to - from });
  return limiter.limit;
}

describe('resolveConcurrency', () => {
  it("is adaptive by default, with `'adaptive'` and with `{ adaptive: {} }`", () => {
    for (const value of [undefined, 'adaptive', { adaptive: {} }, { adaptive: true }]) {
      expect(resolveConcurrency(value, 'adaptive')).toEqual({
        concurrency: 4096,
        adaptive: ADAPTIVE_DEFAULTS,
      });
    }
  });

  it('keeps a number as a fixed limit', () => {
    expect(resolveConcurrency(64, 'adaptive')).toEqual({ concurrency: 64, adaptive: false });
  });

  it('takes bounds and tuning, the cap being `max`', () => {
    const { concurrency, adaptive } = resolveConcurrency(
      { adaptive: { min: 2, max: 100, tolerance: 1.5 } },
      'adaptive',
    );
    expect(concurrency).toBe(100);
    expect(adaptive).toEqual({ ...ADAPTIVE_DEFAULTS, min: 2, max: 100, tolerance: 1.5 });
    expect(resolveConcurrency({ adaptive: { max: 16 } }, 'adaptive').adaptive).toMatchObject({ initial: 16 });
  });

  it('names what is wrong', () => {
    expect(() => resolveConcurrency(0, 'adaptive')).toThrow('Expected `concurrency` to be an integer >= 1');
    expect(() => resolveConcurrency('auto', 'adaptive')).toThrow(
      "`'adaptive'` or `{ adaptive: { min, max, … } }`",
    );
    expect(() => resolveConcurrency({ adaptiv: {} }, 'adaptive')).toThrow(
      "`'adaptive'` or `{ adaptive: { min, max, … } }`",
    );
    expect(() => resolveConcurrency({ adaptive: { mx: 3 } }, 'adaptive')).toThrow(
      'Did you mean `concurrency.adaptive.max`?',
    );
    expect(() => resolveConcurrency({ adaptive: { min: 10, max: 5 } }, 'adaptive')).toThrow(
      'concurrency.adaptive.max',
    );
    expect(() => resolveConcurrency({ adaptive: { initial: 5000 } }, 'adaptive')).toThrow('at most');
    expect(() => resolveConcurrency({ adaptive: { tolerance: 0.5 } }, 'adaptive')).toThrow(
      'concurrency.adaptive.tolerance',
    );
  });
});
