import { performance } from 'node:perf_hooks';
import { parseServerTiming } from 'express-fanout';
import { serverTimingOf } from '../../lib/observe/server-timing';
import type { TaskRun } from '../../lib/task';

/** The fields of a task the writer reads, as a settled or unsettled task would have them. */
function task(name: string, fields: Record<string, unknown> = {}): TaskRun {
  const now = performance.now();
  return {
    name,
    state: 'settled',
    status: 'fulfilled',
    submittedAt: now - 100,
    settledAt: now - 20,
    fallbackMs: 0,
    fallbackPending: false,
    usedFallback: false,
    queuedMs: 0,
    deps: [],
    host: 'call-1',
    attempts: 1,
    retried: 0,
    hedged: 0,
    coalesced: false,
    ...fields,
  } as unknown as TaskRun;
}

describe('parseServerTiming', () => {
  it('reads back what the writer wrote: outcomes, queue waits, attempts, escaped names and the total', () => {
    const tasks = [
      task('db', { queuedMs: 21.25 }),
      task('api', { status: 'timeout', usedFallback: true }),
      task('cache', { status: 'rejected', usedFallback: true, fallbackMs: 12.3 }),
      task('user profile/v2', { status: 'rejected' }),
      task('slow', { state: 'running' }),
      task('flaky', { attempts: 3, retried: 2 }),
      task('hedge', { attempts: 2, hedged: 1, coalesced: true }),
      task('late', { status: 'skipped', usedFallback: true }),
      task('page', { deps: ['db'], submittedAt: performance.now() - 50 }),
      task('__proto__'),
    ];
    const header = serverTimingOf({ tasks, arrival: performance.now() - 150 });
    const timing = parseServerTiming(header);
    expect(Object.keys(timing)).toEqual([
      'db',
      'api',
      'cache',
      'user_profile_v2',
      'slow',
      'flaky',
      'hedge',
      'late',
      'page',
      '__proto__',
      'total',
    ]);
    expect(timing.db).toMatchObject({ outcome: 'fulfilled', queuedMs: 21.3, ms: 80, desc: 'queued 21.3 ms' });
    expect(timing.api).toMatchObject({ outcome: 'fallback', fallbackMs: 0, queuedMs: 0 });
    expect(timing.cache).toMatchObject({ outcome: 'fallback', fallbackMs: 12.3 });
    expect(timing.user_profile_v2).toMatchObject({ outcome: 'failed' });
    expect(timing.slow!.outcome).toBe('running');
    expect(timing.slow!.ms).toBeGreaterThanOrEqual(100);
    expect(timing.flaky).toMatchObject({ outcome: 'fulfilled', retried: 2, hedged: false });
    expect(timing.hedge).toMatchObject({ outcome: 'fulfilled', hedged: true, coalesced: true });
    expect(timing.late).toMatchObject({ outcome: 'skipped' });
    expect(timing.page!.atMs).toBeGreaterThanOrEqual(49);
    expect(timing.db!.atMs).toBeUndefined();
    expect(Object.getPrototypeOf(timing)).toBe(Object.prototype);
    expect(Object.hasOwn(timing, '__proto__')).toBe(true);
    expect(timing.total).toMatchObject({ outcome: 'fulfilled', desc: '' });
    expect(timing.total!.ms).toBeGreaterThanOrEqual(150);
  });

  it('reads the more entry the writer adds beyond its cap', () => {
    const tasks = Array.from({ length: 70 }, (_, i) => task(`t${i}`));
    const timing = parseServerTiming(serverTimingOf({ tasks, arrival: performance.now() }));
    expect(timing.more!.desc).toMatch(/^\d+ more tasks$/);
    expect(timing.t0!.outcome).toBe('fulfilled');
    expect(timing.total).toBeDefined();
  });

  it('reads a header from a string, an array, a supertest or http response and a fetch Response', () => {
    const text = 'app;dur=1.5, db;dur=20;desc="fallback; queued 3 ms", total;dur=25';
    const expected = {
      app: expect.objectContaining({ ms: 1.5, outcome: 'fulfilled' }),
      db: expect.objectContaining({ ms: 20, outcome: 'fallback', queuedMs: 3 }),
      total: expect.objectContaining({ ms: 25 }),
    };
    expect(parseServerTiming(text)).toEqual(expected);
    expect(
      parseServerTiming(['app;dur=1.5', 'db;dur=20;desc="fallback; queued 3 ms", total;dur=25']),
    ).toEqual(expected);
    expect(parseServerTiming({ headers: { 'server-timing': text } })).toEqual(expected);
    expect(parseServerTiming(new Response('', { headers: { 'Server-Timing': text } }))).toEqual(expected);
  });

  it('reads quoted strings with escapes, commas and semicolons, case-insensitive parameter names', () => {
    const timing = parseServerTiming('x;DUR=3;Desc="a \\"quoted\\" ; b, c", y;dur=1');
    expect(timing.x).toMatchObject({ ms: 3, desc: 'a "quoted" ; b, c' });
    expect(timing.y!.ms).toBe(1);
  });

  it('is empty without a header', () => {
    expect(parseServerTiming(undefined)).toEqual({});
    expect(parseServerTiming(null)).toEqual({});
    expect(parseServerTiming('')).toEqual({});
    expect(parseServerTiming({ headers: {} })).toEqual({});
  });
});
