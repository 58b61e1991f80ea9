import { MAX_AGE_MS, REFRESH_MS, Transits, WINDOW, originOf } from '../../lib/transit';
import { reportedWorkMs, WORK_HEADER } from '../../lib/work-time-header';

const A = 'http://a.internal:8080';
const B = 'http://b.internal:8080';

describe('Transits (the learned transit per callee origin)', () => {
  it('knows nothing of an origin it never heard from: no learned margin', () => {
    const transits = new Transits();
    expect(transits.marginMs(A, 0)).toBe(0);
    expect(transits.snapshot(0)).toEqual({});
  });

  it('learns nothing from a callee that reports no work time (its round trip is mostly its work)', () => {
    const transits = new Transits();
    transits.answered(A, 250, undefined, 0);
    expect(transits.marginMs(A, 1)).toBe(0);
    expect(transits.size).toBe(0);
  });

  it('a transit is the round trip minus the reported work, never below 0', () => {
    const transits = new Transits();
    transits.answered(A, 80.4, 20, 0);
    expect(transits.marginMs(A, 1)).toBeCloseTo(60.4);
    transits.answered(B, 10.2, 11, 0);
    expect(transits.marginMs(B, 1)).toBe(0);
    expect(transits.snapshot(1)[B]).toEqual({ marginMs: 0, samples: 1 });
  });

  it('takes the nearest-rank p99: the largest of fewer than 100 transits, skips the single largest of 128', () => {
    const transits = new Transits();
    for (let i = 0; i < 50; i++) transits.answered(A, 60 + (i % 5), 0, i);
    transits.answered(A, 300, 0, 50);
    expect(transits.marginMs(A, 51)).toBe(300);
    for (let i = 51; i < 51 + 77; i++) transits.answered(A, 60 + (i % 5), 0, i);
    // 128 transits now: one at 300, the rest at 60-64 (read after the refresh: lower ones lower it then).
    expect(transits.snapshot(2000)[A]).toEqual({ marginMs: 64, samples: WINDOW });
    transits.answered(A, 290, 0, 2000);
    // Two outliers among 128: the p99 is the second largest.
    expect(transits.marginMs(A, 2001)).toBe(290);
  });

  it('a higher transit raises the margin at once, lower ones lower it at the next refresh (no sort per call)', () => {
    const transits = new Transits();
    transits.answered(A, 80, 0, 0);
    transits.answered(A, 90, 0, 1);
    expect(transits.marginMs(A, 2)).toBe(90);
    transits.answered(A, 120, 0, 3);
    expect(transits.marginMs(A, 4)).toBe(120);
    for (let i = 0; i < WINDOW; i++) transits.answered(A, 40, 0, 5 + i);
    expect(transits.snapshot(200)[A]).toEqual({ marginMs: 120, samples: WINDOW });
    expect(transits.marginMs(A, 5 + REFRESH_MS)).toBe(40);
  });

  it('keeps the last 128 transits only: a hop that became faster is learned as such', () => {
    const transits = new Transits();
    for (let i = 0; i < WINDOW; i++) transits.answered(A, 100, 0, i);
    for (let i = 0; i < WINDOW; i++) transits.answered(A, 20, 0, WINDOW + i);
    expect(transits.marginMs(A, 2 * WINDOW)).toBe(20);
  });

  it('a hop that became slower raises the margin at its first slow answer', () => {
    const transits = new Transits();
    for (let i = 0; i < WINDOW; i++) transits.answered(A, 20, 0, i);
    transits.answered(A, 70, 0, WINDOW);
    transits.answered(A, 72, 0, WINDOW + 1);
    expect(transits.marginMs(A, WINDOW + 2)).toBe(70);
  });

  it("an origin's first answer (a new connection, a cold client) stands only until a lower second replaces it", () => {
    const transits = new Transits();
    transits.answered(A, 180, 0, 0);
    expect(transits.marginMs(A, 1)).toBe(180);
    transits.answered(A, 62, 0, 2);
    expect(transits.snapshot(3)[A]).toEqual({ marginMs: 62, samples: 1 });
    // Only the first: later answers all count.
    transits.answered(A, 61, 0, 4);
    transits.answered(A, 75, 0, 5);
    expect(transits.snapshot(6)[A]).toEqual({ marginMs: 75, samples: 3 });
  });

  it('a higher second answer is kept beside the first', () => {
    const transits = new Transits();
    transits.answered(A, 60, 0, 0);
    transits.answered(A, 90, 0, 1);
    expect(transits.snapshot(2)[A]).toEqual({ marginMs: 90, samples: 2 });
  });

  it('transits age out after 5 minutes, and an origin with none left is forgotten', () => {
    const transits = new Transits();
    transits.answered(A, 300, 0, 0);
    transits.answered(A, 350, 0, 1);
    transits.answered(A, 60, 0, 60_000);
    expect(transits.marginMs(A, 60_001)).toBe(350);
    expect(transits.marginMs(A, MAX_AGE_MS + 2)).toBe(60);
    expect(transits.snapshot(MAX_AGE_MS + 2)[A]).toEqual({ marginMs: 60, samples: 1 });
    expect(transits.marginMs(A, MAX_AGE_MS + 60_001)).toBe(0);
    expect(transits.size).toBe(0);
  });

  it('remembers at most maxOrigins origins, the least recently used leaving first', () => {
    const transits = new Transits(3);
    transits.answered('http://1', 10, 0, 0);
    transits.answered('http://2', 20, 0, 0);
    transits.answered('http://3', 30, 0, 0);
    // Used (a call's margin was read): no longer the least recently used.
    transits.marginMs('http://1', 1);
    transits.answered('http://4', 40, 0, 2);
    expect(Object.keys(transits.snapshot(3)).sort()).toEqual(['http://1', 'http://3', 'http://4']);
    expect(transits.size).toBe(3);
  });

  it("uses a new connection's set-up time until an answer reports a transit", () => {
    const transits = new Transits();
    transits.connected(A, 31, 0);
    expect(transits.marginMs(A, 1)).toBe(31);
    expect(transits.snapshot(1)[A]).toEqual({ marginMs: 31, samples: 0 });
    transits.answered(A, 70, 5, 2);
    expect(transits.marginMs(A, 3)).toBe(65);
    expect(transits.marginMs(B, 3)).toBe(0);
    transits.connected(B, 12, 0);
    expect(transits.marginMs(B, MAX_AGE_MS + 1)).toBe(0);
  });

  it('a callee that answers without a work time is silent: its connection estimate goes, its connections are not watched', () => {
    const transits = new Transits();
    expect(transits.unknown(A)).toBe(true);
    transits.connected(A, 25, 0);
    expect(transits.unknown(A)).toBe(false);
    transits.answered(A, 300, undefined, 1);
    expect(transits.marginMs(A, 2)).toBe(0);
    expect(transits.snapshot(2)).toEqual({});
    expect(transits.unknown(A)).toBe(false);
    // It starts reporting (an upgrade): learned from then on.
    transits.answered(A, 300, 250, 3);
    expect(transits.marginMs(A, 4)).toBe(50);
  });

  it('a callee that stops reporting keeps its recent transits until they age out', () => {
    const transits = new Transits();
    transits.answered(A, 70, 10, 0);
    transits.answered(A, 300, undefined, 1);
    expect(transits.marginMs(A, 2)).toBe(60);
    expect(transits.marginMs(A, MAX_AGE_MS + 1)).toBe(0);
  });

  it('remembers at most maxOrigins silent origins', () => {
    const transits = new Transits(2);
    for (const origin of ['http://1', 'http://2', 'http://3']) transits.answered(origin, 10, undefined, 0);
    expect(['http://1', 'http://2', 'http://3'].map((o) => transits.unknown(o))).toEqual([
      true,
      false,
      false,
    ]);
  });

  it('stats are own keys of a plain-data object', () => {
    const transits = new Transits();
    transits.answered(A, 50, 10, 0);
    const snapshot = transits.snapshot(1);
    expect(Object.keys(snapshot)).toEqual([A]);
    expect(JSON.parse(JSON.stringify(snapshot))).toEqual({ [A]: { marginMs: 40, samples: 1 } });
  });
});

describe('the work time a callee reports', () => {
  const headers = (init: Record<string, string>): Headers => new Headers(init);

  it(`reads ${WORK_HEADER}, an integer of ms`, () => {
    expect(reportedWorkMs(headers({ [WORK_HEADER]: '412' }))).toBe(412);
    expect(reportedWorkMs(headers({ [WORK_HEADER]: ' 0 ' }))).toBe(0);
  });

  it('falls back on the Server-Timing total entry, wherever it is and however it is written', () => {
    expect(reportedWorkMs(headers({ 'server-timing': 'db;dur=20, total;dur=301.5' }))).toBe(301.5);
    expect(reportedWorkMs(headers({ 'server-timing': 'total;desc="all";dur=44, db;dur=3' }))).toBe(44);
    expect(reportedWorkMs(headers({ 'server-timing': 'total;dur="12"' }))).toBe(12);
  });

  it('prefers its own header over Server-Timing', () => {
    expect(reportedWorkMs(headers({ [WORK_HEADER]: '7', 'server-timing': 'total;dur=300' }))).toBe(7);
  });

  it('ignores what is malformed or another entry: no work time rather than a wrong one', () => {
    expect(reportedWorkMs(headers({}))).toBeUndefined();
    expect(reportedWorkMs(headers({ [WORK_HEADER]: '-3' }))).toBeUndefined();
    expect(reportedWorkMs(headers({ [WORK_HEADER]: '1e3' }))).toBeUndefined();
    expect(reportedWorkMs(headers({ 'server-timing': 'subtotal;dur=30, db;dur=2' }))).toBeUndefined();
    expect(reportedWorkMs(headers({ 'server-timing': 'total' }))).toBeUndefined();
    expect(reportedWorkMs(headers({ 'server-timing': 'db;desc="total;dur=5";dur=2' }))).toBeUndefined();
  });
});

describe('originOf', () => {
  it('is the origin of an absolute URL, undefined for anything else', () => {
    expect(originOf('http://127.0.0.1:3000/a?b=c')).toBe('http://127.0.0.1:3000');
    expect(originOf(new URL('https://api.example.com/x'))).toBe('https://api.example.com');
    expect(originOf('/relative')).toBeUndefined();
    expect(originOf('data:text/plain,hi')).toBeUndefined();
  });
});
