import { delay, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { report, timed, useHarness } from './helpers/harness';

// Deadline-aware admission end to end, with real time: one slot, tasks of 100 ms. Timing assertions keep wide
// windows (the machine is small and shared); the unit tests pin the arithmetic with a fake clock.
describe.each(expressVersions)('admission under overload (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('sheds at once (503, Retry-After) the request whose expected wait leaves no time to run, instead of a 504 at its deadline', async () => {
    const { http, fo } = await serve({ concurrency: 1, budgetMs: 420 }, (app) =>
      app.get(
        '/',
        report((req) => req.fanout.run(({ signal }) => delay(100, 'done', signal), 'db')),
      ),
    );
    await http.get('/').expect(200); // one sample: a task holds its slot about 100 ms
    // One runs, two wait (100 and 200 ms, each then runs 100 ms: inside 420); a fourth would wait 300 ms, more
    // than the wait admitted: (420 - 125 ms to run) / 1.25, the expected wait's own margin.
    const results = await Promise.all(Array.from({ length: 4 }, () => timed(http.get('/'))));
    const bodies = results.map((r) => r.value.body as { ok: boolean; error?: { status?: number } });
    expect(bodies.slice(0, 3).every((b) => b.ok)).toBe(true);
    expect(bodies[3]).toMatchObject({ ok: false, error: { name: 'OverloadedError', status: 503 } });
    expect((bodies[3]!.error as { message: string; headers: unknown }).message).toMatch(
      /^Task `db` shed: its expected wait for a slot \(\d+ ms\) leaves no time to run in the \d+ ms left \(1\/1 running, 2\/1024 queued\)$/,
    );
    expect((bodies[3]!.error as { headers: unknown }).headers).toEqual({ 'Retry-After': '1' });
    expect(results[3]!.ms).toBeLessThan(80);
    expect(fo.stats()).toMatchObject({ shed: 1, timedOut: 0, completed: 4, limit: 1 });
  });

  it('drops a queued task whose turn comes too late to finish: 503 when it would have started, not a 504 at the deadline', async () => {
    const { http, fo } = await serve({ concurrency: 1, budgetMs: 1000 }, (app) =>
      app.get(
        '/',
        report((req) =>
          req.fanout.run(({ signal }) => delay(Number(req.query.ms ?? 100), 'done', signal), 'db'),
        ),
      ),
    );
    await http.get('/').expect(200); // tasks hold their slot about 100 ms
    // This one holds it 250 ms. The next, with a 300 ms budget, expects to start at 100 ms: admitted; its turn
    // comes at 250 ms, with 50 ms left for about 100 ms of work.
    const slow = timed(http.get('/?ms=250'));
    await delay(5, null);
    const late = await timed(http.get('/').set('x-request-budget-ms', '300'));
    expect((await slow).value.body).toMatchObject({ ok: true });
    expect(late.value.body).toMatchObject({ ok: false, error: { name: 'OverloadedError', status: 503 } });
    expect((late.value.body as { error: { message: string } }).error.message).toMatch(
      /^Task `db` shed: only \d+ ms left when its turn came, about \d+ ms of work/,
    );
    expect(late.ms).toBeGreaterThan(200);
    expect(late.ms).toBeLessThan(295);
    expect(fo.stats()).toMatchObject({ shed: 1, timedOut: 0 });
  });

  it('reports the adaptive limit in stats()', async () => {
    const { http, fo } = await serve({ concurrency: { adaptive: { initial: 8, min: 2, max: 64 } } }, (app) =>
      app.get(
        '/',
        report((req) => req.fanout.run(() => 1)),
      ),
    );
    expect(fo.stats().limit).toBe(8);
    await http.get('/').expect(200);
    expect(fo.stats().limit).toBeGreaterThanOrEqual(2);
  });
});

describe.each(expressVersions)('admission when the queue outgrows the budget (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('answers what it cannot serve in time with a 503 by its deadline, never a 504, and serves the rest', async () => {
    // fairness.test.ts's case with admission on: 20 requests of 4 tasks of 50 ms on 4 slots (1000 ms of work)
    // against a 725 ms budget. They arrive before the first tasks end, when nothing is measured yet (only
    // `maxQueue` bounds the queue then): the ones that cannot finish are dropped when their turn comes.
    // Request r's turn comes at about 50·r ms: the 14th (r = 13) starts with 75 ms left and the 15th has 25 ms,
    // so no turn falls on the boundary. (With 700 ms, the 14th had exactly its 50 ms left: it was started, and
    // a few ms of timer jitter on a loaded machine made it a 504 now and then. The same schedule runs on a fake
    // clock in admission.test.ts, where it is exact.)
    const arrived: number[] = [];
    const { http, fo } = await serve(
      { concurrency: 4, perRequest: 4, budgetMs: 725, maxQueue: 10000 },
      (app) =>
        app.get(
          '/:r',
          report(async (req) => {
            arrived.push(Number(req.params.r));
            const tasks: Record<string, () => Promise<number>> = {};
            for (let j = 0; j < 4; j++) tasks[`t${j}`] = () => delay(50, j);
            return req.fanout.all(tasks);
          }),
        ),
    );
    const outcomes: Promise<{ ok: boolean; status?: number; ms: number }>[] = [];
    for (let r = 0; r < 20; r++) {
      outcomes.push(
        timed(http.get(`/${r}`)).then(({ value, ms }) => ({
          ok: (value.body as { ok: boolean }).ok,
          status: (value.body as { error?: { status?: number } }).error?.status,
          ms,
        })),
      );
      await waitFor(() => arrived.length === r + 1, `request ${r} to arrive`);
    }
    const results = await Promise.all(outcomes);
    const served = results.filter((r) => r.ok);
    const shed = results.filter((r) => !r.ok);
    expect(served.length).toBeGreaterThanOrEqual(10);
    expect(shed.every((r) => r.status === 503)).toBe(true);
    expect(shed.every((r) => r.ms < 725 + 20)).toBe(true);
    expect(fo.stats().timedOut).toBe(0);
  });
});

describe.each(expressVersions)('a bulkhead per dependency (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('sheds the saturated dependency only: the healthy one keeps answering, and stats() tells them apart', async () => {
    // `inventory` (two task names, one `dependency`) answers nothing until released: its limit is 2, so one
    // request runs, one waits (a dependency may fill half of `maxQueue`: 2 tasks), the rest are shed at once.
    // `/fast`'s tasks start at once beside it: their bulkheads and their share of the queue are their own.
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { http, fo } = await serve(
      { concurrency: { adaptive: { initial: 2, min: 2, max: 64 } }, budgetMs: 2000, maxQueue: 4 },
      (app) => {
        app.get(
          '/slow',
          report((req) =>
            req.fanout.all({
              stock: { run: () => gate.then(() => 1), dependency: 'inventory' },
              reserve: { run: () => gate.then(() => 2), dependency: 'inventory' },
            }),
          ),
        );
        app.get(
          '/fast',
          report((req) => req.fanout.all({ price: () => delay(5, 3), tax: () => 4 })),
        );
      },
    );
    // A supertest request is sent when awaited: `then` sends it now.
    const slow = Array.from({ length: 6 }, () => http.get('/slow').then((r) => r));
    await waitFor(() => fo.stats().dependencies.inventory?.running === 2, 'inventory to be saturated');
    for (let i = 0; i < 10; i++) {
      expect((await http.get('/fast')).body).toEqual({ ok: true, value: { price: 3, tax: 4 } });
    }
    const stats = fo.stats();
    expect(stats.dependencies.inventory).toMatchObject({ limit: 2, running: 2 });
    expect(stats.dependencies.price).toMatchObject({ running: 0, queued: 0, shed: 0 });
    expect(stats.dependencies.tax).toMatchObject({ shed: 0 });
    expect(stats.dependencies).not.toHaveProperty('stock');
    release();
    const bodies = (await Promise.all(slow)).map(
      (r) => r.body as { ok: boolean; error?: { status?: number } },
    );
    expect(bodies.some((b) => b.ok)).toBe(true);
    const shed = bodies.filter((b) => !b.ok);
    expect(shed.every((b) => b.error?.status === 503)).toBe(true);
    expect(fo.stats().dependencies.inventory!.shed).toBe(2 * shed.length);
    expect(fo.stats().shed).toBe(2 * shed.length);
  });
});
