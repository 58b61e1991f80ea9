import { PercentileWindow } from '../../lib/latency';
import { TokenBucket } from '../../lib/token-bucket';

describe('TokenBucket (retry and hedge budgets), on a fake clock', () => {
  it('gives the reserve from the first request: minPerSecond × the window’s seconds', () => {
    const bucket = new TokenBucket({ ratio: 0.2, minPerSecond: 10, windowMs: 10_000 }, 0);
    let granted = 0;
    while (bucket.tryWithdraw(1)) granted++;
    expect(granted).toBe(100);
    expect(bucket.tryWithdraw(2)).toBe(false);
  });

  it('adds `ratio` of a token per first attempt: 20 % of 50 first attempts is 10 retries', () => {
    const bucket = new TokenBucket({ ratio: 0.2, minPerSecond: 0, windowMs: 1000 }, 0);
    for (let i = 0; i < 50; i++) bucket.deposit(i);
    let granted = 0;
    while (bucket.tryWithdraw(60)) granted++;
    expect(granted).toBe(10);
  });

  it('forgets deposits and withdrawals older than the window', () => {
    const bucket = new TokenBucket({ ratio: 1, minPerSecond: 0, windowMs: 1000 }, 0);
    for (let i = 0; i < 5; i++) bucket.deposit(10);
    expect(bucket.balance(500)).toBe(5);
    expect(bucket.tryWithdraw(500)).toBe(true);
    expect(bucket.balance(900)).toBe(4);
    // The deposits (made in the first slot) expire after a window; the withdrawal (in the sixth) half a window later.
    expect(bucket.balance(1150)).toBe(-1);
    expect(bucket.balance(1650)).toBe(0);
    // A long silence clears everything at once.
    bucket.deposit(1700);
    expect(bucket.balance(100_000)).toBe(0);
  });

  it('never grants more than the balance under a storm: calls stay within (1 + ratio) × first attempts + reserve', () => {
    const bucket = new TokenBucket({ ratio: 0.2, minPerSecond: 10, windowMs: 10_000 }, 0);
    let retries = 0;
    const first = 5000;
    // 1000 first attempts a second for 5 s, each wanting 3 retries.
    for (let i = 0; i < first; i++) {
      const now = i;
      bucket.deposit(now);
      for (let r = 0; r < 3; r++) if (bucket.tryWithdraw(now)) retries++;
    }
    expect(retries).toBeLessThanOrEqual(0.2 * first + 100);
    expect(retries).toBeGreaterThanOrEqual(0.2 * first);
  });
});

describe('PercentileWindow (per-name latency), on given samples', () => {
  it('is NaN without samples, then gives nearest-rank quantiles', () => {
    const window = new PercentileWindow(128);
    expect(window.quantile(0.95)).toBeNaN();
    for (let i = 1; i <= 100; i++) window.add(i);
    expect(window.quantile(0.5)).toBe(50);
    expect(window.quantile(0.95)).toBe(95);
    expect(window.quantile(0.99)).toBe(99);
    expect(window.quantile(1)).toBe(100);
  });

  it('keeps only the last `size` samples: a shift in latency shows once the window has turned over', () => {
    const window = new PercentileWindow(32);
    for (let i = 0; i < 32; i++) window.add(20);
    expect(window.quantile(0.95)).toBe(20);
    for (let i = 0; i < 32; i++) window.add(200);
    expect(window.count).toBe(32);
    expect(window.quantile(0.5)).toBe(200);
  });

  it('answers a number between two sorts while the window fills (was undefined: no hedge, no skip)', () => {
    const window = new PercentileWindow(128);
    for (let i = 1; i <= 20; i++) window.add(i);
    expect(window.quantile(0.95)).toBe(19);
    // Two more samples: fewer than an eighth are new, so no sort; the rank must come from the 20 sorted ones.
    window.add(100);
    window.add(100);
    for (const q of [0.5, 0.95, 0.99, 1]) expect(Number.isFinite(window.quantile(q))).toBe(true);
    expect(window.quantile(0.95)).toBe(19);
    expect(window.quantile(1)).toBe(20);
    // Once enough are new, it sorts again and sees them.
    window.add(100);
    expect(window.quantile(1)).toBe(100);
  });

  it('sees a 5 % tail at p99 but not at p90', () => {
    const window = new PercentileWindow(100);
    for (let i = 0; i < 100; i++) window.add(i % 20 === 0 ? 2000 : 20);
    expect(window.quantile(0.9)).toBe(20);
    expect(window.quantile(0.99)).toBe(2000);
  });
});
