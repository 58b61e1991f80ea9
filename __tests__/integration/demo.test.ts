import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import supertest from 'supertest';
import { API_MS, FAST_API_MS, TIGHT_BUDGET_MS } from '../../demo-server/app';
import { CATALOG_FILE } from '../../demo-server/catalog';
import { CPU_N, fib, MAX_CPU_N } from '../../demo-server/cpu';
import { DB_FILE } from '../../demo-server/db';
import { BUDGET_MS, createDemo, type Demo } from '../../demo-server/demo';

// The demo with real IO: a file, a SQLite query on the fan-out's worker pool, an HTTP service on its own
// thread, and a CPU-bound step on the pool or on the event loop. Timing checks are tolerance windows and
// ratios: the machine is small and shared.

interface Answer {
  route: string;
  elapsedMs: number;
  steps: Record<string, number>;
  file: { file: string; bytes: number; products: number };
  db: { region: string; orders: number; revenue: number };
  api: { service: string; delayMs: number; budgetHeader: string | null };
}

interface CpuAnswer {
  route: string;
  n: number;
  fib: number;
  elapsedMs: number;
  steps: { fib: number };
}

interface Stats {
  running: number;
  queued: number;
  completed: number;
  workers: { busy: number; idle: number; pending: number; shed: number; terminated: number; crashed: number };
  dependencies: Record<string, { limit: number; running: number; queued: number; shed: number }>;
  eventLoopDelayMs: { p50: number; p99: number; max: number; windowMs: number };
}

const median = (values: number[]): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/**
 * Worker threads alive that this side listens to: each holds a MessagePort handle. (The slow API's thread,
 * whose messages nobody listens to once it has started, holds none.)
 */
const threadHandles = (): number =>
  process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('the demo server', () => {
  let dataDir: string;
  let demo: Demo;
  const logged: string[] = [];
  const request = () => supertest(demo.url);
  const get = async (path: string, status = 200) => {
    const res = await request().get(path);
    expect(res.status).toBe(status);
    return res;
  };

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'fanout-demo-'));
    demo = await createDemo({ port: 0, dataDir, log: (line) => logged.push(line) });
  }, 60_000);

  afterAll(async () => {
    await demo?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const stats = async () => (await get('/stats')).body as Stats;

  it('creates its database and file on first start, and starts its worker threads', async () => {
    expect(demo.setup.databaseCreatedMs).toEqual(expect.any(Number));
    expect(demo.setup.catalogCreated).toBe(true);
    expect(existsSync(join(dataDir, DB_FILE))).toBe(true);
    expect(existsSync(join(dataDir, CATALOG_FILE))).toBe(true);
    // From the sources the pool loads the TypeScript script itself, through tsx's require hook in execArgv.
    expect(demo.setup.workerScript).toBe('worker.ts');
    // The start-up requests ran the query on both threads: they are up before the first client's request.
    expect((await stats()).workers).toEqual({
      busy: 0,
      idle: 2,
      pending: 0,
      shed: 0,
      terminated: 0,
      crashed: 0,
    });
  });

  it('answers /sequential with the file, the query and the API call, taking their sum', async () => {
    const body = (await get('/sequential')).body as Answer;
    expect(body.route).toBe('/sequential');
    expect(body.file).toEqual({ file: CATALOG_FILE, bytes: expect.any(Number), products: 5000 });
    expect(body.db).toEqual(expect.objectContaining({ region: 'north', orders: expect.any(Number) }));
    expect(body.db.orders).toBeGreaterThan(50_000);
    expect(body.api).toEqual({ service: 'slow-api', delayMs: API_MS, budgetHeader: null });
    const { file = NaN, db = NaN, api = NaN } = body.steps;
    expect(body.elapsedMs).toBeGreaterThanOrEqual(file + db + api - 1);
    expect(api).toBeGreaterThanOrEqual(API_MS - 2);
  });

  it('answers / with the same values through the fan-out, passing the remaining budget to the API', async () => {
    const [fanned, sequential] = [(await get('/')).body as Answer, (await get('/sequential')).body as Answer];
    expect(fanned.route).toBe('/');
    expect(fanned.file).toEqual(sequential.file);
    expect(fanned.db).toEqual(sequential.db);
    expect(fanned.api).toEqual(expect.objectContaining({ service: 'slow-api', delayMs: API_MS }));
    const budgetSeen = Number(fanned.api.budgetHeader);
    expect(Number.isInteger(budgetSeen)).toBe(true);
    expect(budgetSeen).toBeGreaterThan(0);
    expect(budgetSeen).toBeLessThanOrEqual(BUDGET_MS);
    expect(Object.keys(fanned.steps).sort()).toEqual(['api', 'db', 'file']);
  });

  it('answers / in about the slowest step and /sequential in the sum', async () => {
    // An API latency close to the query's time is where fanning out gains most; measured here, not assumed.
    const warm = (await get('/sequential')).body as Answer;
    const apiMs = Math.min(300, Math.max(40, Math.round(warm.steps.db ?? 0)));
    const fanned: Answer[] = [];
    const sequential: Answer[] = [];
    for (let i = 0; i < 3; i++) {
      fanned.push((await get(`/?apiMs=${apiMs}`)).body as Answer);
      sequential.push((await get(`/sequential?apiMs=${apiMs}`)).body as Answer);
    }
    const fanMs = median(fanned.map((a) => a.elapsedMs));
    const sequentialMs = median(sequential.map((a) => a.elapsedMs));
    // Expected about 0.5 (max versus sum of two similar steps); the window is generous.
    expect(fanMs).toBeLessThan(sequentialMs * 0.85);
    // The overlap is real: the fan-out took less than its own steps added up.
    const overlapped = fanned.filter((a) => a.elapsedMs < (a.steps.db ?? 0) + (a.steps.api ?? 0));
    expect(overlapped.length).toBeGreaterThanOrEqual(2);
  });

  it('answers /budget within its tight budget, with a fallback for the late call and Server-Timing', async () => {
    const res = await get('/budget');
    const body = res.body as Answer & { budgetMs: number; slowApi: { fallback: boolean; reason: string } };
    expect(body.budgetMs).toBe(TIGHT_BUDGET_MS);
    expect(body.elapsedMs).toBeGreaterThanOrEqual(TIGHT_BUDGET_MS - 5);
    expect(body.elapsedMs).toBeLessThan(TIGHT_BUDGET_MS + 250);
    expect(body.slowApi).toMatchObject({ fallback: true, reason: expect.stringContaining('slowApi') });
    expect(body.api).toEqual(expect.objectContaining({ service: 'slow-api', delayMs: FAST_API_MS }));
    const budgetSeen = Number(body.api.budgetHeader);
    expect(budgetSeen).toBeGreaterThan(0);
    expect(budgetSeen).toBeLessThanOrEqual(TIGHT_BUDGET_MS);
    const timing = String(res.headers['server-timing']);
    for (const name of ['file', 'db', 'api', 'total'])
      expect(timing).toMatch(new RegExp(`\\b${name};dur=\\d`));
    expect(timing).toMatch(/slowApi;dur=[\d.]+;desc="(fallback[\d. ms]*|timeout)"/);
  });

  it('falls back on /budget to the last good answer of the late call, read from an asynchronous cache', async () => {
    // A fast enough call succeeds and is remembered; the next, late one falls back to it.
    const fresh = (await get('/budget?slowMs=20')).body as { slowApi: { delayMs: number } };
    expect(fresh.slowApi).toMatchObject({ service: 'slow-api', delayMs: 20 });
    const res = await get('/budget');
    const body = res.body as Answer & {
      slowApi: { fallback: boolean; stale: { delayMs: number; at: number } };
    };
    expect(body.slowApi).toMatchObject({ fallback: true, stale: { service: 'slow-api', delayMs: 20 } });
    expect(body.slowApi.stale.at).toBeLessThanOrEqual(Date.now());
    expect(body.elapsedMs).toBeLessThan(TIGHT_BUDGET_MS + 250);
    expect(String(res.headers['server-timing'])).toMatch(/slowApi;dur=[\d.]+;desc="fallback [\d.]+ ms"/);
  });

  it('answers /seed in 0.3 s and /seed/sequential in 0.6 s', async () => {
    const fanned = (await get('/seed')).body as Record<string, unknown> & { elapsedMs: number };
    const sequential = (await get('/seed/sequential')).body as Record<string, unknown> & {
      elapsedMs: number;
    };
    const values = { file: 'waited 0.1 s', db: 'waited 0.2 s', api: 'waited 0.3 s' };
    expect(fanned).toEqual({ route: '/seed', elapsedMs: expect.any(Number), ...values });
    expect(sequential).toEqual({ route: '/seed/sequential', elapsedMs: expect.any(Number), ...values });
    expect(fanned.elapsedMs).toBeGreaterThanOrEqual(295);
    expect(fanned.elapsedMs).toBeLessThan(500);
    expect(sequential.elapsedMs).toBeGreaterThanOrEqual(595);
    expect(sequential.elapsedMs).toBeLessThan(900);
    expect(fanned.elapsedMs).toBeLessThan(sequential.elapsedMs * 0.75);
  });

  it("answers 504 naming the API call when it misses the client's budget", async () => {
    const started = Date.now();
    const res = await request().get('/?apiMs=2000').set('x-request-budget-ms', '200');
    expect(res.status).toBe(504);
    expect(res.body).toEqual(
      expect.objectContaining({ status: 504, error: expect.stringMatching(/`api`.*200 ms budget/) }),
    );
    expect(Date.now() - started).toBeLessThan(200 + 500);
    expect(logged.some((line) => line.includes('504'))).toBe(true);
  });

  it('answers /cpu on the worker pool and /cpu/inline on the event loop with the same number', async () => {
    const pooled = (await get('/cpu?n=20')).body as CpuAnswer;
    const inline = (await get('/cpu/inline?n=20')).body as CpuAnswer;
    expect(pooled).toEqual({
      route: '/cpu',
      n: 20,
      fib: 6765,
      elapsedMs: expect.any(Number),
      steps: { fib: expect.any(Number) },
    });
    expect(inline).toEqual({
      ...pooled,
      route: '/cpu/inline',
      elapsedMs: expect.any(Number),
      steps: { fib: expect.any(Number) },
    });
    const [byDefault, inlineByDefault] = [
      (await get('/cpu')).body as CpuAnswer,
      (await get('/cpu/inline')).body as CpuAnswer,
    ];
    expect(byDefault).toEqual(expect.objectContaining({ n: CPU_N, fib: fib(CPU_N) }));
    expect(inlineByDefault).toEqual(expect.objectContaining({ n: CPU_N, fib: byDefault.fib }));
  });

  it('keeps the event loop free while /cpu computes, and not while /cpu/inline does', async () => {
    await stats(); // starts a new event-loop delay window
    const inline = (await get('/cpu/inline')).body as CpuAnswer;
    const blocked = (await stats()).eventLoopDelayMs;
    const pooled = (await get('/cpu')).body as CpuAnswer;
    const free = (await stats()).eventLoopDelayMs;
    // Inline, the loop was late by about the whole computation; on the pool, by far less. Generous bounds.
    expect(blocked.max).toBeGreaterThan(inline.steps.fib * 0.5);
    expect(free.max).toBeLessThan(pooled.steps.fib * 0.5);
    expect(free.windowMs).toBeGreaterThanOrEqual(pooled.elapsedMs - 1);
  });

  it('answers 504 from /cpu when the computation misses the budget, and the pool replaces the thread', async () => {
    const before = await stats();
    const started = Date.now();
    const res = await request().get(`/cpu?n=${MAX_CPU_N}`).set('x-request-budget-ms', '200');
    expect(res.status).toBe(504);
    expect(res.body).toEqual(
      expect.objectContaining({ error: expect.stringMatching(/`fib`.*200 ms budget/) }),
    );
    expect(Date.now() - started).toBeLessThan(200 + 500);
    // The cut call keeps its thread for a short grace (to answer its cancellation) before the thread is ended.
    let after = await stats();
    for (let i = 0; i < 50 && after.workers.terminated === before.workers.terminated; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      after = await stats();
    }
    expect(after.workers.terminated).toBe(before.workers.terminated + 1);
    expect(after.workers.crashed).toBe(0);
    expect(((await get('/cpu?n=20')).body as CpuAnswer).fib).toBe(6765);
  });

  it('answers 400 with the reason for a bad query parameter', async () => {
    const latency = await get('/?apiMs=fast', 400);
    expect(latency.body).toEqual(
      expect.objectContaining({ status: 400, error: expect.stringContaining('apiMs') }),
    );
    const region = await get('/sequential?region=mars', 400);
    expect(region.body).toEqual(expect.objectContaining({ error: expect.stringContaining('north') }));
    const n = await get(`/cpu/inline?n=${MAX_CPU_N + 1}`, 400);
    expect(n.body).toEqual(
      expect.objectContaining({
        error: expect.stringContaining(`\`n\` to be an integer from 0 to ${MAX_CPU_N}`),
      }),
    );
    await get('/cpu?n=-1', 400);
  });

  it('reports the middleware and worker counters and the event-loop delay on /stats', async () => {
    expect((await get('/ping')).body).toEqual({ pong: true });
    const body = await stats();
    expect(body).toEqual(
      expect.objectContaining({
        running: 0,
        queued: 0,
        completed: expect.any(Number),
        timedOut: expect.any(Number),
        // A thread terminated by the previous test may still be starting again (busy until it is up).
        workers: {
          busy: expect.any(Number),
          idle: expect.any(Number),
          pending: 0,
          shed: 0,
          terminated: expect.any(Number),
          crashed: 0,
        },
        // Every IO dependency of the demo has a bulkhead of its own; worker methods have none.
        dependencies: expect.objectContaining({
          file: expect.objectContaining({ running: 0, queued: 0 }),
          api: expect.objectContaining({ running: 0, queued: 0 }),
        }),
        eventLoop: expect.objectContaining({ shed: 0 }),
        eventLoopDelayMs: {
          p50: expect.any(Number),
          p99: expect.any(Number),
          max: expect.any(Number),
          windowMs: expect.any(Number),
        },
      }),
    );
    expect(body.completed).toBeGreaterThan(0);
    expect(Object.keys(body.dependencies)).not.toContain('regionReport');
    expect(body.workers.busy + body.workers.idle).toBe(2);
    const { p50, p99, max } = body.eventLoopDelayMs;
    expect(0 <= p50 && p50 <= p99 && p99 <= max).toBe(true);
  });

  it('finds its data on a second start, and close() ends it, its threads included, and frees its port', async () => {
    const threadsBefore = threadHandles();
    const second = await createDemo({ port: 0, dataDir, log: (line) => logged.push(line) });
    try {
      expect(second.setup.databaseCreatedMs).toBeNull();
      expect(second.setup.catalogCreated).toBe(false);
      // The pool's two threads.
      expect(threadHandles()).toBe(threadsBefore + 2);
      await supertest(second.url).get('/seed').expect(200);
      await supertest(second.url).get('/cpu?n=20').expect(200);
    } finally {
      await second.close();
    }
    expect(second.server.listening).toBe(false);
    await expect(fetch(`${second.apiUrl}/?ms=0`)).rejects.toThrow();
    expect(second.fo.stats().workers).toEqual({
      busy: 0,
      idle: 0,
      pending: 0,
      shed: 0,
      terminated: 0,
      crashed: 0,
    });
    await until(() => threadHandles() === threadsBefore);
  });
});
