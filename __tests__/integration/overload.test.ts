import { delay } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { report, timed, useHarness } from './helpers/harness';

// Deadline-aware admission end to end, with real time: one slot, tasks of 100 ms. Timing assertions keep wide
// windows (the machine is small and shared); the unit tests pin the arithmetic with a fake clock.
describe.each(expressVersions)('admission under overload (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('sheds at once (503, Retry-After) the request whose expected wait leaves no time to run, instead of a 504 at its deadline', async () => {
    const { http, fo } = await serve({ concurrency: 1, budgetMs: 350 }, (app) =>
      app.get(
        '/',
        report((req) => req.fanout.run(({ signal }) => delay(100, 'done', signal), 'db')),
      ),
    );
    await http.get('/').expect(200); // one sample: a task holds its slot about 100 ms
    // One runs, two wait (100 and 200 ms, each then runs 100 ms: inside 350); a fourth would wait 300 ms.
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
