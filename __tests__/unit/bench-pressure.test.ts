// The pure pieces of the pressure scenarios' bench (issue 16): how stats() is flattened for the traces, how rates
// and grids are read from the servers' series, and how two runs' targets are set side by side.
import { beforeAfter } from '../../bench/report/before-after';
import {
  DEPENDENCY_LIMIT,
  median,
  onGrid,
  spread,
  statsTraceTable,
  windowRate,
} from '../../bench/scenarios/pressure';
import type { Target } from '../../bench/scenarios/types';
import { flattenStats } from '../../bench/servers/flatten-stats';

describe('flattenStats', () => {
  it('keeps every numeric leaf under its dotted path and drops the rest', () => {
    const flat = flattenStats({
      limit: 12,
      closed: false,
      name: 'x',
      workers: { busy: 2, pending: 5 },
      eventLoop: { delayMs: 3.5, shed: 7 },
    });
    expect(flat).toEqual({
      limit: 12,
      'workers.busy': 2,
      'workers.pending': 5,
      'eventLoop.delayMs': 3.5,
      'eventLoop.shed': 7,
    });
  });

  it('keys per-dependency entries by name whether stats() gives a record, an array or a Map', () => {
    const expected = { 'dependencies.db.limit': 8, 'dependencies.api.limit': 20 };
    expect(flattenStats({ dependencies: { db: { limit: 8 }, api: { limit: 20 } } })).toEqual(expected);
    expect(
      flattenStats({
        dependencies: [
          { name: 'db', limit: 8 },
          { dependency: 'api', limit: 20 },
        ],
      }),
    ).toEqual(expected);
    expect(
      flattenStats({
        dependencies: new Map([
          ['db', { limit: 8 }],
          ['api', { limit: 20 }],
        ]),
      }),
    ).toEqual(expected);
    expect(flattenStats({ list: [{ limit: 1 }, { limit: 2 }] })).toEqual({
      'list.0.limit': 1,
      'list.1.limit': 2,
    });
  });

  it('stops at a bounded depth and a bounded number of leaves', () => {
    expect(flattenStats({ a: { b: { c: { d: { e: 1 } } } } })).toEqual({});
    expect(flattenStats({ a: { b: { c: { d: 1 } } } })).toEqual({ 'a.b.c.d': 1 });
    const many = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, i]));
    expect(Object.keys(flattenStats(many))).toHaveLength(400);
  });

  it('is empty for a value that is not an object', () => {
    expect(flattenStats(undefined)).toEqual({});
    expect(flattenStats(42)).toEqual({});
  });
});

describe('series read by the runner', () => {
  const server = (series: Record<string, number[]>) => ({
    rss: 0,
    peakRss: 0,
    eventLoopDelay: { p50: 0, p99: 0, max: 0, mean: 0 },
    cpuMs: 0,
    windowMs: 0,
    counters: {},
    latency: {},
    series,
  });

  it('windowRate is the count added per second between the window edges, from the sample times', () => {
    // 100 answers a second from 0 to 2 s, then nothing (the drain): the window 1-2 s says 100/s.
    const elapsed = [0, 500, 1000, 1500, 2000, 2500, 3000];
    const ok = [0, 50, 100, 150, 200, 200, 200];
    expect(windowRate(server({ elapsedMs: elapsed, ok }), 'ok', 1, 2, -1)).toBeCloseTo(100);
    expect(windowRate(server({ elapsedMs: elapsed, ok }), 'ok', 1, 3, -1)).toBeCloseTo(50);
  });

  it('windowRate falls back where the server has no such series or the window is empty', () => {
    expect(windowRate(server({ elapsedMs: [0, 100] }), 'ok', 1, 2, 7)).toBe(7);
    expect(windowRate(undefined, 'ok', 1, 2, 7)).toBe(7);
    expect(windowRate(server({ elapsedMs: [0, 100], ok: [0, 1] }), 'ok', 2, 1, 7)).toBe(7);
  });

  it('onGrid takes the latest sample at or before each point, and reads a null (NaN over IPC) as NaN', () => {
    const values = [1, 2, null as unknown as number, 4];
    const elapsed = [0, 150, 260, 390];
    expect(onGrid(values, elapsed, 100)).toEqual([1, 1, 2, NaN]);
  });

  it('statsTraceTable lists the matching fields every step, in the order of the patterns', () => {
    const table = statsTraceTable(
      server({
        elapsedMs: [0, 500, 1000],
        'stats.shed': [0, 3, 9],
        'stats.limit': [32, 16, 8],
        'stats.dependencies.db.limit': [10, 10, 12],
        'stats.running': [1, 1, 1],
      }),
      [/^stats\.limit$/, DEPENDENCY_LIMIT, /^stats\.shed$/],
    );
    expect(table).toEqual({
      columns: ['s', 'limit', 'dependencies.db.limit', 'shed'],
      rows: [
        ['0.0', '32', '10', '0'],
        ['0.5', '16', '10', '3'],
        ['1.0', '8', '12', '9'],
      ],
    });
    expect(statsTraceTable(server({ elapsedMs: [0] }), [/^stats\.limit$/])).toBeUndefined();
  });

  it('DEPENDENCY_LIMIT names the dependency, with or without an instance prefix', () => {
    expect(DEPENDENCY_LIMIT.exec('stats.dependencies.slowdb.limit')?.[1]).toBe('slowdb');
    expect(DEPENDENCY_LIMIT.exec('stats.slow.dependencies.db.limit')?.[1]).toBe('db');
    expect(DEPENDENCY_LIMIT.test('stats.limit')).toBe(false);
  });

  it('median and spread ignore values that were not measured', () => {
    expect(median([3, NaN, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(Number.isNaN(median([]))).toBe(true);
    expect(spread([3, 1, 2], String)).toBe('2 [1–3]');
    expect(spread([5], String)).toBe('5');
    expect(spread([NaN], String)).toBe('—');
  });
});

describe('beforeAfter', () => {
  const target = (over: Partial<Target>): Target => ({
    scenario: 'surge',
    variant: 'defaults',
    target: 't',
    measured: 'm',
    holds: false,
    ...over,
  });
  const run = (targets: Target[]) => ({
    machine: { commit: 'abc', date: 'd', loadAverageAtStart: [1, 2, 3] },
    durationS: 10,
    targets,
  });

  it('sets targets side by side by scenario, variant and place, whatever numbers their text carries', () => {
    const text = beforeAfter(
      run([
        target({ target: 'ratio ≥ 0.85 (171 req/s)', measured: '0.05×' }),
        target({ target: 'p99', measured: '3800 ms' }),
      ]),
      run([
        target({ variant: 'defaults [before]', measured: 'twin' }),
        target({ target: 'ratio ≥ 0.85 (160 req/s)', measured: '0.91×', holds: true }),
        target({ target: 'p99', measured: '420 ms', holds: true }),
      ]),
    );
    expect(text).toContain('| surge | ratio ≥ 0.85 (160 req/s) | 0.05× | **fails** | 0.91× | holds |');
    expect(text).toContain('| surge | p99 | 3800 ms | **fails** | 420 ms | holds |');
    expect(text).not.toContain('twin');
  });

  it('shows a target measured in one run only with a dash for the other', () => {
    const text = beforeAfter(run([]), run([target({ scenario: 'isolation', holds: null })]));
    expect(text).toContain('| isolation | t | — | — | m | not measured |');
  });
});
