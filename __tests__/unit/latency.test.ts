import { DecayingRate, Ewma, LatencyWindow } from '../../lib/latency';

describe('Ewma', () => {
  it('starts at the first sample and moves by its weight toward each next one', () => {
    const e = new Ewma(0.25);
    expect(e.ready).toBe(false);
    expect(e.update(100)).toBe(100);
    expect(e.ready).toBe(true);
    expect(e.update(200)).toBe(125);
  });

  it('converges on a constant sample', () => {
    const e = new Ewma(0.05);
    e.update(0);
    for (let i = 0; i < 200; i++) e.update(50);
    expect(e.value).toBeCloseTo(50, 2);
  });
});

describe('DecayingRate', () => {
  it('knows nothing before a quarter of its time constant was observed', () => {
    const r = new DecayingRate(100);
    r.event(0);
    r.event(10);
    expect(Number.isNaN(r.perMs())).toBe(true);
  });

  it('measures a steady rate, corrected for how little it has observed yet', () => {
    const r = new DecayingRate(100);
    // 0.64 events per ms: 32 slots of 50 ms.
    for (let t = 0; t <= 40; t += 1 / 0.64) r.event(t);
    expect(r.perMs()).toBeGreaterThan(0.55);
    expect(r.perMs()).toBeLessThan(0.75);
    for (let t = 40; t <= 1000; t += 1 / 0.64) r.event(t);
    expect(r.perMs()).toBeCloseTo(0.64, 1);
  });

  it('follows a step in the rate within a few time constants', () => {
    const r = new DecayingRate(100);
    let t = 0;
    for (; t <= 1000; t += 1) r.event(t);
    expect(r.perMs()).toBeCloseTo(1, 1);
    for (; t <= 1500; t += 4) r.event(t);
    expect(r.perMs()).toBeCloseTo(0.25, 1);
  });

  it('does not count paused time: a burst after idle is measured at its own rate', () => {
    const r = new DecayingRate(100);
    for (let t = 0; t <= 200; t += 2) r.event(t);
    r.pause();
    // Ten seconds idle, then the same rate again: the estimate does not see the gap.
    for (let t = 10_200; t <= 10_260; t += 2) r.event(t);
    expect(r.perMs()).toBeCloseTo(0.5, 1);
  });
});

describe('LatencyWindow', () => {
  it('keeps count, mean, min and the most in flight, until reset', () => {
    const w = new LatencyWindow(5);
    expect(Number.isNaN(w.mean)).toBe(true);
    w.add(10, 3);
    w.add(30, 7);
    w.add(20, 1);
    expect([w.count, w.mean, w.min, w.maxInFlight]).toEqual([3, 20, 10, 7]);
    w.reset(50);
    expect([w.count, w.min, w.maxInFlight, w.startedAt]).toEqual([0, Infinity, 0, 50]);
  });
});
