import type { NextFunction, Request, Response } from 'express';
import { BudgetExceededError, FanoutError, OverloadedError, TaskFailedError, gather } from 'express-fanout';
import { deferred, delay, never, sleep, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { timed, useHarness } from './helpers/harness';

describe.each(expressVersions)('gather() (%s)', (_version, express) => {
  const { serve, onCleanup } = useHarness(express);

  it('answers with the merged JSON of every task (the whole endpoint in one line)', async () => {
    const { http } = await serve({}, (app) =>
      app.get(
        '/',
        gather({
          file: ({ signal }) => delay(30, 'file-content', signal),
          db: () => [{ id: 1 }],
          api: { run: () => Promise.reject(new Error('down')), fallback: null },
        }),
      ),
    );
    const res = await http.get('/').expect(200).expect('Content-Type', /json/);
    expect(res.body).toEqual({ file: 'file-content', db: [{ id: 1 }], api: null });
  });

  it('answers with the status it is given', async () => {
    const { http } = await serve({}, (app) => app.post('/', gather({ id: () => 7 }, { status: 201 })));
    const res = await http.post('/').expect(201);
    expect(res.body).toEqual({ id: 7 });
  });

  it('shapes the JSON with map(values, req)', async () => {
    const { http } = await serve({}, (app) =>
      app.get(
        '/items/:id',
        gather(
          { name: () => 'widget', price: () => 9 },
          { map: (values, req) => ({ id: req.params.id, label: `${values.name} at ${values.price}` }) },
        ),
      ),
    );
    expect((await http.get('/items/42').expect(200)).body).toEqual({ id: '42', label: 'widget at 9' });
  });

  it('accepts the tasks as a function of the request', async () => {
    const { http } = await serve({}, (app) =>
      app.get(
        '/',
        gather((req) => ({
          echo: () => String(req.query.q),
          len: () => String(req.query.q).length,
        })),
      ),
    );
    expect((await http.get('/?q=hello').expect(200)).body).toEqual({ echo: 'hello', len: 5 });
    expect((await http.get('/?q=hi').expect(200)).body).toEqual({ echo: 'hi', len: 2 });
  });

  it('passes a failure to next(err): Express answers 502 and the error handler gets the TaskFailedError', async () => {
    const { http, errors } = await serve({}, (app) =>
      app.get('/', gather({ ok: () => 1, db: () => Promise.reject(new Error('db down')) })),
    );
    await http.get('/').expect(502);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TaskFailedError);
    expect((errors[0] as TaskFailedError).tasks).toEqual(['db']);
  });

  it('passes the deadline to next(err): Express answers 504 by the budget even when tasks never settle', async () => {
    const { http, errors } = await serve({ budgetMs: 200, graceMs: 50 }, (app) =>
      app.get('/', gather({ hung: never })),
    );
    const { value: res, ms } = await timed(http.get('/'));
    expect(res.status).toBe(504);
    expect(errors[0]).toBeInstanceOf(BudgetExceededError);
    expect(ms).toBeGreaterThanOrEqual(190);
    expect(ms).toBeLessThan(450);
  });

  it('passes shedding to next(err): Express answers 503 with a Retry-After header', async () => {
    const gate = deferred<number>();
    const { http, fo, errors } = await serve({ concurrency: 1, maxQueue: 0 }, (app) => {
      app.get('/hold', gather({ h: () => gate.promise }));
      app.get('/', gather({ x: () => 1 }));
    });
    const hold = http.get('/hold').then((r) => r);
    await waitFor(() => fo.stats().running === 1, 'the slot to be taken');
    const res = await http.get('/').expect(503);
    expect(res.headers['retry-after']).toMatch(/^\d+$/);
    expect(errors[0]).toBeInstanceOf(OverloadedError);
    gate.resolve(1);
    expect((await hold).body).toEqual({ h: 1 });
  });

  it('lets a custom error handler answer from the FanoutError', async () => {
    const { http } = await serve({}, (app) => {
      app.get('/', gather({ db: () => Promise.reject(new Error('x')) }));
      app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
        if (!(err instanceof FanoutError)) return next(err);
        res.status(err.status).json({ error: err.name, tasks: err.tasks });
      });
    });
    const res = await http.get('/').expect(502);
    expect(res.body).toEqual({ error: 'TaskFailedError', tasks: ['db'] });
  });

  describe.each([
    ['502', { db: () => Promise.reject(new Error('SECRET-db-password')) }, 502],
    ['504', { db: never }, 504],
  ] as const)('in production (%s)', (_label, tasks, status) => {
    it('answers without the stack or the task error message', async () => {
      // Express logs 5xx errors to stderr outside the test env; keep the test output clean.
      const log = jest.spyOn(console, 'error').mockImplementation(() => undefined);
      onCleanup(() => log.mockRestore());
      const { http } = await serve({ budgetMs: 200, graceMs: 50 }, (app) => app.get('/', gather(tasks)), {
        env: 'production',
      });
      const res = await http.get('/').expect(status);
      expect(res.text).not.toContain('SECRET');
      expect(res.text).not.toMatch(/\bat .*\.(ts|js):\d+/);
      expect(res.text).not.toContain('Error:');
      await sleep(50); // Express 5 logs the error on the next turn of the event loop
    });
  });

  it('passes an exception of map() to next(err) rather than crashing', async () => {
    const { http } = await serve({}, (app) =>
      app.get(
        '/',
        gather(
          { a: () => 1 },
          {
            map: () => {
              throw new Error('map broke');
            },
          },
        ),
      ),
    );
    await http.get('/').expect(500);
  });

  it('answers with a clear 500 when fanout() is not mounted before it, rather than hanging', async () => {
    const { http } = await serve({}, (app) => app.get('/', gather({ a: () => 1 })), {
      mount: () => undefined,
    });
    const { value: res, ms } = await timed(http.get('/').timeout(3000));
    expect(res.status).toBe(500);
    expect(res.text).toContain('fanout()');
    expect(ms).toBeLessThan(2000);
  });
});
