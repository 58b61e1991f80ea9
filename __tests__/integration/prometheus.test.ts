import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { Registry } from 'prom-client';
import { gather, type FanoutStats } from 'express-fanout';
import { prometheus } from 'express-fanout/prometheus';
import { createDemo, type Demo } from '../../demo-server/demo';
import { deferred, delay, waitFor } from './helpers/async';
import { useHarness } from './helpers/harness';

// Metrics are read back through Prometheus's text format, as a scraper sees them.
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`Not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]!] = pair[2]!;
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

const find = (samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
const value = (samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined =>
  find(samples, name, labels)[0]?.value;

/**
 * The demo, started up to three times: its start-up warm-up gives the first worker call (a thread loading the
 * TypeScript worker script through tsx) the demo's 1000 ms budget, which a loaded machine sometimes misses.
 */
async function startDemo(dataDir: string): Promise<Demo> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await createDemo({ port: 0, dataDir, log: () => undefined });
    } catch (error) {
      if (attempt === 3 || !/warm-up request/.test(String(error))) throw error;
    }
  }
}

describe('express-fanout/prometheus', () => {
  const { serve, onCleanup } = useHarness(express);

  async function served(options: Parameters<typeof prometheus>[1] = {}, concurrency = 1) {
    const registry = new Registry();
    const served = await serve({ concurrency, admission: false }, (app) => {
      app.get(
        '/',
        gather({
          db: ({ signal }) => delay(60, 'd', signal),
          api: { run: () => Promise.reject(new Error('down')), fallback: null },
        }),
      );
    });
    const metrics = prometheus(served.fo, { registry, ...options });
    onCleanup(() => metrics.remove());
    return { ...served, registry, metrics };
  }

  it('records task time and queue time per task and outcome, in seconds, with buckets from 5 ms to 10 s', async () => {
    const { http, registry } = await served();
    for (let i = 0; i < 3; i++) await http.get('/').expect(200);
    const samples = parse(await registry.metrics());

    const buckets = find(samples, 'fanout_task_duration_seconds_bucket', {
      task: 'db',
      outcome: 'fulfilled',
    });
    expect(buckets.map((b) => b.labels.le)).toEqual([
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '0.5',
      '1',
      '2.5',
      '5',
      '10',
      '+Inf',
    ]);
    // Each db task took about 60 ms: none within 50 ms, all within 10 s.
    expect(buckets.find((b) => b.labels.le === '0.05')!.value).toBe(0);
    expect(buckets.find((b) => b.labels.le === '+Inf')!.value).toBe(3);
    const sum = value(samples, 'fanout_task_duration_seconds_sum', { task: 'db', outcome: 'fulfilled' })!;
    expect(sum).toBeGreaterThan(3 * 0.055);
    expect(sum).toBeLessThan(3 * 0.5);
    expect(value(samples, 'fanout_task_duration_seconds_count', { task: 'api', outcome: 'fallback' })).toBe(
      3,
    );

    // With one slot, `api` waited for `db` (declared first) to finish: about 60 ms in the queue.
    const queued = value(samples, 'fanout_task_queue_seconds_sum', { task: 'api', outcome: 'fallback' })!;
    expect(queued).toBeGreaterThan(3 * 0.05);
    expect(value(samples, 'fanout_task_queue_seconds_count', { task: 'db', outcome: 'fulfilled' })).toBe(3);

    expect(value(samples, 'fanout_tasks_total', { task: 'db', outcome: 'fulfilled' })).toBe(3);
    expect(value(samples, 'fanout_tasks_total', { task: 'api', outcome: 'fallback' })).toBe(3);
  });

  it('reads gauges and process-wide counters from stats() at scrape time', async () => {
    const gate = deferred<number>();
    const registry = new Registry();
    const { http, fo } = await serve({ concurrency: 1, maxQueue: 0, admission: false }, (app) => {
      app.get('/hold', gather({ hold: () => gate.promise }));
      app.get('/', gather({ x: () => 1 }));
    });
    const metrics = prometheus(fo, { registry, prefix: 'app_' });
    onCleanup(() => metrics.remove());
    const hold = http.get('/hold').then((r) => r);
    await waitFor(() => fo.stats().running === 1, 'the slot to be taken');
    await http.get('/').expect(503);
    let samples = parse(await registry.metrics());
    expect(value(samples, 'app_running')).toBe(1);
    expect(value(samples, 'app_queued')).toBe(0);
    expect(value(samples, 'app_concurrency_limit')).toBe(1);
    expect(value(samples, 'app_shed_total')).toBe(1);
    expect(value(samples, 'app_tasks_total', { task: 'x', outcome: 'shed' })).toBe(1);
    expect(value(samples, 'app_worker_threads', { state: 'busy' })).toBe(0);
    expect(value(samples, 'app_abandoned_total')).toBe(0);
    // A fixed concurrency has no bulkheads: no dependency series.
    expect(find(samples, 'app_dependency_limit')).toEqual([]);
    gate.resolve(1);
    await hold;
    samples = parse(await registry.metrics());
    expect(value(samples, 'app_running')).toBe(0);
    // A counter never goes down between scrapes.
    expect(value(samples, 'app_shed_total')).toBe(1);
    expect(metrics.names).toEqual(
      expect.arrayContaining([
        'app_task_duration_seconds',
        'app_task_queue_seconds',
        'app_tasks_total',
        'app_shed_total',
        'app_abandoned_total',
        'app_retries_total',
        'app_hedges_total',
        'app_running',
        'app_queued',
        'app_concurrency_limit',
        'app_worker_threads',
        'app_worker_queued',
      ]),
    );
  });

  it('counts task names past maxNames under task="other"', async () => {
    const registry = new Registry();
    const { http, fo } = await serve({}, (app) =>
      app.get(
        '/',
        gather(() => Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`t${i}`, () => i]))),
      ),
    );
    const metrics = prometheus(fo, { registry, maxNames: 3 });
    onCleanup(() => metrics.remove());
    await http.get('/').expect(200);
    await http.get('/').expect(200);
    const tasks = find(parse(await registry.metrics()), 'fanout_tasks_total');
    expect(tasks.map((s) => s.labels.task).sort()).toEqual(['other', 't0', 't1', 't2']);
    expect(tasks.find((s) => s.labels.task === 'other')!.value).toBe(4);
  });

  it('unregisters its metrics and stops observing on remove()', async () => {
    const { http, registry, metrics, fo } = await served();
    metrics.remove();
    expect((await registry.metrics()).trim()).toBe('');
    // Registering again works (the names are free) and starts from zero.
    const again = prometheus(fo, { registry });
    onCleanup(() => again.remove());
    await http.get('/').expect(200);
    expect(value(parse(await registry.metrics()), 'fanout_tasks_total', { task: 'db' })).toBe(1);
  });

  it('shows the transit learned per callee origin as a gauge, origins capped by maxOrigins, aged-out ones gone', async () => {
    const { fo } = await serve({}, () => undefined);
    let transit: FanoutStats['transit'] = {
      'http://a:1': { marginMs: 62, samples: 10 },
      'http://b:1': { marginMs: 3, samples: 4 },
    };
    const stub = { observe: fo.observe, stats: (): FanoutStats => ({ ...fo.stats(), transit }) };
    const registry = new Registry();
    const metrics = prometheus(stub, { registry, maxOrigins: 2 });
    onCleanup(() => metrics.remove());
    expect(metrics.names).toContain('fanout_transit_margin_seconds');
    let samples = find(parse(await registry.metrics()), 'fanout_transit_margin_seconds');
    expect(samples.map((s) => [s.labels.origin, s.value])).toEqual([
      ['http://a:1', 0.062],
      ['http://b:1', 0.003],
    ]);
    // b aged out; c and d come past the cap: they share `other`, at the largest of their margins.
    transit = {
      'http://a:1': { marginMs: 70, samples: 12 },
      'http://c:1': { marginMs: 200, samples: 1 },
      'http://d:1': { marginMs: 150, samples: 1 },
    };
    samples = find(parse(await registry.metrics()), 'fanout_transit_margin_seconds');
    expect(samples.map((s) => [s.labels.origin, s.value])).toEqual([
      ['http://a:1', 0.07],
      ['other', 0.2],
    ]);
  });

  it("shows each dependency's bulkhead (limit, running, queued, shed) with label `dependency`, read at scrape time", async () => {
    const gate = deferred<number>();
    const registry = new Registry();
    const { http, fo } = await serve({}, (app) => {
      app.get(
        '/',
        gather({
          stock: { run: () => gate.promise, dependency: 'inventory' },
          reserve: { run: () => gate.promise, dependency: 'inventory' },
          user: () => 'u',
        }),
      );
    });
    const metrics = prometheus(fo, { registry });
    onCleanup(() => metrics.remove());
    expect(metrics.names).toEqual(
      expect.arrayContaining([
        'fanout_dependency_limit',
        'fanout_dependency_running',
        'fanout_dependency_queued',
        'fanout_dependency_shed_total',
      ]),
    );
    const pending = http.get('/').then((r) => r);
    await waitFor(() => fo.stats().dependencies.inventory?.running === 2, 'both inventory tasks to run');
    let samples = parse(await registry.metrics());
    const { inventory } = fo.stats().dependencies;
    expect(value(samples, 'fanout_dependency_running', { dependency: 'inventory' })).toBe(2);
    expect(value(samples, 'fanout_dependency_queued', { dependency: 'inventory' })).toBe(0);
    expect(value(samples, 'fanout_dependency_limit', { dependency: 'inventory' })).toBe(inventory!.limit);
    expect(value(samples, 'fanout_dependency_shed_total', { dependency: 'inventory' })).toBe(0);
    // `user` names no dependency: its task name is its bulkhead.
    expect(value(samples, 'fanout_dependency_running', { dependency: 'user' })).toBe(0);
    gate.resolve(1);
    await pending;
    samples = parse(await registry.metrics());
    expect(value(samples, 'fanout_dependency_running', { dependency: 'inventory' })).toBe(0);
    expect(
      find(samples, 'fanout_dependency_limit')
        .map((s) => s.labels.dependency)
        .sort(),
    ).toEqual(['inventory', 'user']);
  });

  it('caps the dependency label at maxNames: later dependencies and the core\'s "(other)" summed under "other"; shed counts only grow', async () => {
    const { fo } = await serve({}, () => undefined);
    const dep = (limit: number, running: number, queued: number, shed: number) => ({
      limit,
      running,
      queued,
      shed,
    });
    let dependencies: FanoutStats['dependencies'] = {
      a: dep(8, 1, 0, 2),
      b: dep(4, 2, 1, 0),
      c: dep(6, 3, 2, 5),
      '(other)': dep(10, 1, 1, 1),
    };
    const stub = { observe: fo.observe, stats: (): FanoutStats => ({ ...fo.stats(), dependencies }) };
    const registry = new Registry();
    const metrics = prometheus(stub, { registry, maxNames: 2 });
    onCleanup(() => metrics.remove());
    let samples = parse(await registry.metrics());
    const row = (name: string) =>
      Object.fromEntries(find(samples, name).map((s) => [s.labels.dependency, s.value]));
    expect(row('fanout_dependency_limit')).toEqual({ a: 8, b: 4, other: 16 });
    expect(row('fanout_dependency_running')).toEqual({ a: 1, b: 2, other: 4 });
    expect(row('fanout_dependency_queued')).toEqual({ a: 0, b: 1, other: 3 });
    expect(row('fanout_dependency_shed_total')).toEqual({ a: 2, b: 0, other: 6 });
    // A later scrape: the labels given stay with their dependencies, whatever order stats() lists them in.
    dependencies = {
      c: dep(6, 0, 0, 9),
      b: dep(5, 0, 0, 3),
      a: dep(8, 0, 0, 2),
      '(other)': dep(10, 0, 0, 1),
    };
    samples = parse(await registry.metrics());
    expect(row('fanout_dependency_limit')).toEqual({ a: 8, b: 5, other: 16 });
    expect(row('fanout_dependency_shed_total')).toEqual({ a: 2, b: 3, other: 10 });
    // The cap holds: three series, however many dependencies come.
    expect(find(samples, 'fanout_dependency_limit')).toHaveLength(3);
  });

  it('cuts a dependency name to 64 characters in its label, as a task name', async () => {
    const { fo } = await serve({}, () => undefined);
    const long = 'd'.repeat(70);
    const stub = {
      observe: fo.observe,
      stats: (): FanoutStats => ({
        ...fo.stats(),
        dependencies: { [long]: { limit: 3, running: 1, queued: 0, shed: 0 } },
      }),
    };
    const registry = new Registry();
    const metrics = prometheus(stub, { registry });
    onCleanup(() => metrics.remove());
    const samples = find(parse(await registry.metrics()), 'fanout_dependency_limit');
    expect(samples.map((s) => [s.labels.dependency, s.value])).toEqual([['d'.repeat(64), 3]]);
  });

  it('refuses bad options with a TypeError naming them', async () => {
    const { fo } = await serve({}, () => undefined);
    expect(() => prometheus(fo, { prefix: 'bad-prefix' })).toThrow(TypeError);
    expect(() => prometheus(fo, { maxNames: 0 })).toThrow(
      'Expected `maxNames` to be an integer >= 1, got `0`',
    );
    expect(() => prometheus(fo, { bukets: [1] } as never)).toThrow('Unknown option `bukets`');
    expect(() => prometheus(fo, { maxOrigins: 0 })).toThrow(
      'Expected `maxOrigins` to be an integer >= 1, got `0`',
    );
  });
});

describe('the demo’s GET /metrics', () => {
  let dataDir: string;
  let demo: Demo;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'fanout-metrics-'));
    demo = await startDemo(dataDir);
  }, 60_000);

  afterAll(async () => {
    await demo?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('shows the task histograms after a few requests, in the text format', async () => {
    for (const path of ['/', '/', '/budget', '/seed']) {
      const res = await fetch(`${demo.url}${path}`);
      await res.arrayBuffer();
    }
    const res = await fetch(`${demo.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toContain('# TYPE fanout_task_duration_seconds histogram');
    expect(text).toContain('# TYPE fanout_tasks_total counter');
    expect(text).toContain('# TYPE fanout_running gauge');
    const samples = parse(text);
    // `/` twice plus the two warm-up requests of the demo's start: file, db (a worker thread) and api.
    for (const task of ['file', 'db', 'api']) {
      const count = value(samples, 'fanout_task_duration_seconds_count', { task, outcome: 'fulfilled' })!;
      expect(count).toBeGreaterThanOrEqual(3);
    }
    expect(value(samples, 'fanout_tasks_total', { task: 'slowApi', outcome: 'fallback' })).toBe(1);
    // The db task waits for a thread: its queue time is recorded too.
    expect(
      value(samples, 'fanout_task_queue_seconds_count', { task: 'db', outcome: 'fulfilled' }),
    ).toBeGreaterThan(0);
    expect(value(samples, 'fanout_worker_threads', { state: 'idle' })).toBeGreaterThanOrEqual(1);
  });
});
