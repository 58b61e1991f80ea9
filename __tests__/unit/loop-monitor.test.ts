import {
  acquireLoopMonitor,
  loopMonitorState,
  ManualLoopMonitor,
  SAMPLE_INTERVAL_MS,
  SampledLoopMonitor,
  TIMER_SLACK_MS,
  type LoopClock,
} from '../../lib/loop-monitor';

/** A fake clock: `advance(ms, busyMs)` moves time on; a timer fires `busyMs` late (the loop was blocked). */
class FakeClock implements LoopClock {
  t = 0;
  active = 0;
  idle = 0;
  timers: { at: number; fn: () => void }[] = [];
  cancelled = 0;

  now(): number {
    return this.t;
  }

  schedule(fn: () => void, ms: number): unknown {
    const timer = { at: this.t + ms, fn };
    this.timers.push(timer);
    return timer;
  }

  cancel(handle: unknown): void {
    this.timers = this.timers.filter((t) => t !== handle);
    this.cancelled++;
  }

  elu(): { active: number; idle: number } {
    return { active: this.active, idle: this.idle };
  }

  /** Runs the loop for `ms`; a share `busy` of it (0..1) is work, and timers fire `stallMs` after they are due. */
  run(ms: number, opts: { busy?: number; stallMs?: number } = {}): void {
    const end = this.t + ms;
    const busy = opts.busy ?? 0;
    const stall = opts.stallMs ?? 0;
    for (;;) {
      const next = this.timers.reduce<{ at: number; fn: () => void } | null>(
        (a, b) => (a === null || b.at < a.at ? b : a),
        null,
      );
      if (next === null || next.at + stall > end) break;
      const fireAt = Math.max(this.t, next.at + stall); // a timer overdue (the loop was blocked) fires now
      this.spend(fireAt - this.t, busy);
      this.timers = this.timers.filter((x) => x !== next);
      next.fn();
    }
    this.spend(end - this.t, busy);
  }

  private spend(ms: number, busy: number): void {
    this.t += ms;
    this.active += ms * busy;
    this.idle += ms * (1 - busy);
  }
}

describe('SampledLoopMonitor', () => {
  it('counts no delay while timers fire on time', () => {
    const clock = new FakeClock();
    const m = new SampledLoopMonitor(clock);
    m.start();
    clock.run(1000);
    expect(m.delayTotalMs()).toBe(0);
    expect(m.recentDelayMs()).toBe(0);
  });

  it('ignores the timer resolution of a healthy loop', () => {
    const clock = new FakeClock();
    const m = new SampledLoopMonitor(clock);
    m.start();
    clock.run(1000, { stallMs: TIMER_SLACK_MS });
    expect(m.delayTotalMs()).toBe(0);
  });

  it('accrues how late each tick fired, beyond the timer slack', () => {
    const clock = new FakeClock();
    const m = new SampledLoopMonitor(clock);
    m.start();
    clock.run(100);
    // Every tick 5 ms late: each interval is 15 ms, of which 4 ms count (5 minus the 1 ms slack).
    clock.run(150, { stallMs: 5 });
    const ticks = Math.floor(150 / (SAMPLE_INTERVAL_MS + 5));
    expect(m.delayTotalMs()).toBeCloseTo(ticks * (5 - TIMER_SLACK_MS), 6);
    expect(m.recentDelayMs()).toBeGreaterThan(2);
    expect(m.recentDelayMs()).toBeLessThanOrEqual(4);
  });

  it('counts a stall still in progress, and stays monotone when its tick fires', () => {
    const clock = new FakeClock();
    const m = new SampledLoopMonitor(clock);
    m.start();
    // The loop blocks for 50 ms: the tick due at 10 has not fired by 40.
    clock.t = 40;
    const during = m.delayTotalMs();
    expect(during).toBe(40 - SAMPLE_INTERVAL_MS - TIMER_SLACK_MS);
    expect(m.recentDelayMs()).toBe(during);
    clock.t = 60;
    const before = m.delayTotalMs();
    clock.run(0); // the late tick fires at 60
    expect(m.delayTotalMs()).toBe(before);
    expect(before).toBeGreaterThan(during);
    clock.run(500);
    expect(m.delayTotalMs()).toBe(before);
    // The smoothed delay decays once the loop runs on time again.
    expect(m.recentDelayMs()).toBeLessThan(1);
  });

  it('measures the utilisation over ~100 ms windows', () => {
    const clock = new FakeClock();
    const m = new SampledLoopMonitor(clock);
    m.start();
    clock.run(300, { busy: 0.8 });
    expect(m.utilization()).toBeCloseTo(0.8, 6);
    clock.run(300, { busy: 0.1 });
    expect(m.utilization()).toBeCloseTo(0.1, 6);
  });

  it('stop() clears its timer; the total stays and a restart continues from it', () => {
    const clock = new FakeClock();
    const m = new SampledLoopMonitor(clock);
    m.start();
    clock.run(100, { stallMs: 5 });
    const total = m.delayTotalMs();
    m.stop();
    expect(clock.timers).toHaveLength(0);
    expect(m.running).toBe(false);
    clock.t += 1000;
    expect(m.delayTotalMs()).toBe(total);
    m.start();
    clock.run(100, { stallMs: 5 });
    expect(m.delayTotalMs()).toBeGreaterThan(total);
  });
});

describe('acquireLoopMonitor', () => {
  it('starts one monitor for the process and stops it when the last lease is released', () => {
    const before = loopMonitorState().leases;
    const a = acquireLoopMonitor();
    const b = acquireLoopMonitor();
    expect(loopMonitorState()).toEqual({ leases: before + 2, running: true });
    // One monitor behind both (read at one instant: a tick overdue on a loaded machine grows the total).
    const now = performance.now();
    expect(a.delayTotalMs(now)).toBe(b.delayTotalMs(now));
    a.release();
    a.release(); // a second release of the same lease is a no-op
    expect(loopMonitorState()).toEqual({ leases: before + 1, running: true });
    b.release();
    expect(loopMonitorState()).toEqual({ leases: before, running: before > 0 });
  });

  it('reads a real loop stall', async () => {
    const lease = acquireLoopMonitor();
    try {
      await new Promise((resolve) => setTimeout(resolve, 30));
      const start = lease.delayTotalMs();
      const until = performance.now() + 60;
      while (performance.now() < until); // block the loop for 60 ms
      await new Promise((resolve) => setTimeout(resolve, 30));
      // Generous: at least half of the stall is seen whatever the machine's noise.
      expect(lease.delayTotalMs() - start).toBeGreaterThan(25);
      expect(lease.utilization()).toBeGreaterThanOrEqual(0);
      expect(lease.utilization()).toBeLessThanOrEqual(1);
    } finally {
      lease.release();
    }
  });
});

describe('ManualLoopMonitor', () => {
  it('reports what the test sets', () => {
    const m = new ManualLoopMonitor();
    m.stall(30);
    m.util = 0.9;
    expect([m.delayTotalMs(), m.recentDelayMs(), m.utilization()]).toEqual([30, 30, 0.9]);
  });
});
