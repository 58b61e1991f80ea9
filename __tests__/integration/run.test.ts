import { delay, never, sleep } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { report, timed, useHarness } from './helpers/harness';

describe.each(expressVersions)('req.fanout.run() (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('resolves with the value of a task function or a task spec', async () => {
    const { http } = await serve({}, (app) =>
      app.get(
        '/',
        report(async (req) => {
          const a: number = await req.fanout.run(() => 1);
          const b: string = await req.fanout.run({ run: async () => 'b' }, 'b');
          const c = await req.fanout.run(({ signal }) => delay(30, 'c', signal), 'c');
          return { a, b, c };
        }),
      ),
    );
    expect((await http.get('/').expect(200)).body.value).toEqual({ a: 1, b: 'b', c: 'c' });
  });

  it('rejects like all() for one task: TaskFailedError (502) naming it, with the original as cause', async () => {
    const { http } = await serve({}, (app) =>
      app.get(
        '/',
        report((req) => req.fanout.run(() => Promise.reject(new Error('hidden detail')), 'db')),
      ),
    );
    const res = await http.get('/').expect(200);
    expect(res.body.error).toMatchObject({
      name: 'TaskFailedError',
      status: 502,
      tasks: ['db'],
      cause: { message: 'hidden detail' },
    });
    expect(res.body.error.message).toContain('db');
    expect(res.body.error.message).not.toContain('hidden detail');
  });

  it('rejects with a TaskFailedError even when no name is given', async () => {
    const { http } = await serve({}, (app) =>
      app.get(
        '/',
        report((req) => req.fanout.run(() => Promise.reject(new Error('x')))),
      ),
    );
    const res = await http.get('/').expect(200);
    expect(res.body.error).toMatchObject({ name: 'TaskFailedError', status: 502 });
    expect(res.body.error.tasks).toHaveLength(1);
  });

  it('rejects with BudgetExceededError (504) past the task timeoutMs', async () => {
    const { http } = await serve({}, (app) =>
      app.get(
        '/',
        report((req) =>
          req.fanout.run({ run: ({ signal }) => delay(3000, 'x', signal), timeoutMs: 100 }, 'slow'),
        ),
      ),
    );
    const { value: res, ms } = await timed(http.get('/'));
    expect(res.body.error).toMatchObject({ name: 'BudgetExceededError', status: 504, tasks: ['slow'] });
    expect(ms).toBeLessThan(450);
  });

  it('runs under the request budget: a task that never settles rejects at the deadline', async () => {
    const { http } = await serve({ budgetMs: 200, graceMs: 50 }, (app) =>
      app.get(
        '/',
        report((req) => req.fanout.run(never, 'hung')),
      ),
    );
    const { value: res, ms } = await timed(http.get('/'));
    expect(res.body.error).toMatchObject({ name: 'BudgetExceededError', status: 504, tasks: ['hung'] });
    expect(ms).toBeGreaterThanOrEqual(190);
    expect(ms).toBeLessThan(450);
  });

  it('resolves with the fallback when the task fails', async () => {
    const { http } = await serve({}, (app) =>
      app.get(
        '/',
        report((req) => req.fanout.run({ run: () => Promise.reject(new Error('x')), fallback: 'fb' }, 'opt')),
      ),
    );
    expect((await http.get('/').expect(200)).body).toEqual({ ok: true, value: 'fb' });
  });

  it('runs under the same bounds: concurrent run() calls of one request never exceed perRequest', async () => {
    let running = 0;
    let peak = 0;
    const { http } = await serve({ perRequest: 2 }, (app) =>
      app.get(
        '/',
        report(async (req) => {
          const task = async () => {
            running++;
            peak = Math.max(peak, running);
            await sleep(30);
            running--;
            return 1;
          };
          const values = await Promise.all(
            Array.from({ length: 6 }, (_, i) => req.fanout.run(task, `t${i}`)),
          );
          return values.length;
        }),
      ),
    );
    expect((await http.get('/').expect(200)).body.value).toBe(6);
    expect(peak).toBe(2);
  });

  it('shares the bounds with all() calls of the same request', async () => {
    let running = 0;
    let peak = 0;
    const task = async () => {
      running++;
      peak = Math.max(peak, running);
      await sleep(30);
      running--;
      return 1;
    };
    const { http } = await serve({ perRequest: 3 }, (app) =>
      app.get(
        '/',
        report(async (req) => {
          await Promise.all([
            req.fanout.all({ a: task, b: task, c: task }),
            req.fanout.run(task, 'd'),
            req.fanout.settle({ e: task, f: task }),
          ]);
          return 'ok';
        }),
      ),
    );
    await http.get('/').expect(200);
    expect(peak).toBe(3);
  });
});
