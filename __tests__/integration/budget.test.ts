import { format } from 'node:util';
import createDebug from 'debug';
import { Router, type RequestHandler } from 'express';
import supertest from 'supertest';
import { FanoutError, budget, fanout } from 'express-fanout';
import { app as routeBudgetApp } from '../../examples/route-budget';
import { delay, never } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { report, timed, useHarness } from './helpers/harness';

const H = 'x-request-budget-ms';

describe.each(expressVersions)('budget(ms) (%s)', (_version, express) => {
  const { serve, onCleanup } = useHarness(express);

  /** `/` reports the time left after `budget(ms)`; `/hang` waits for a task that never settles. */
  const routeServer = (options: Parameters<typeof serve>[0], ms: number) =>
    serve({ graceMs: 50, ...options }, (app) => {
      app.get(
        '/',
        budget(ms),
        report(async (req) => req.fanout.run(({ remainingMs }) => remainingMs(), 'left')),
      );
      app.get(
        '/hang',
        budget(ms),
        report(async (req) => req.fanout.all({ a: never })),
      );
      app.get(
        '/slow',
        budget(ms),
        report(async (req) => req.fanout.all({ slow: ({ signal }) => delay(300, 'done', signal) })),
      );
    });

  it('lengthens one route budget past the middleware budgetMs', async () => {
    const { http } = await routeServer({ budgetMs: 100 }, 2000);
    const left = await http.get('/').expect(200);
    expect(left.body.value).toBeGreaterThan(1500);
    expect(left.body.value).toBeLessThanOrEqual(2000);
    // A 300 ms task that the app-wide 100 ms would cut off completes.
    expect((await http.get('/slow').expect(200)).body).toEqual({ ok: true, value: { slow: 'done' } });
  });

  it('shortens one route budget: a task that never settles gets its 504 by the route budget', async () => {
    const { http } = await routeServer({ budgetMs: 5000 }, 150);
    const { value: res, ms } = await timed(http.get('/hang'));
    expect(res.body.error).toMatchObject({ name: 'BudgetExceededError', status: 504, budgetMs: 150 });
    expect(ms).toBeGreaterThanOrEqual(140);
    expect(ms).toBeLessThan(1000);
  });

  it("lets a shorter client budget header win over the route's budget", async () => {
    const { http } = await routeServer({ budgetMs: 100 }, 5000);
    const res = await http.get('/').set(H, '300').expect(200);
    expect(res.body.value).toBeGreaterThan(150);
    expect(res.body.value).toBeLessThanOrEqual(300);
    const { value: hang, ms } = await timed(http.get('/hang').set(H, '200'));
    expect(hang.body.error).toMatchObject({ status: 504, budgetMs: 200 });
    expect(ms).toBeLessThan(1000);
  });

  it("never lets a longer client header lengthen the route's budget", async () => {
    const { http } = await routeServer({ budgetMs: 100, maxBudgetMs: 60_000 }, 400);
    const res = await http.get('/').set(H, '30000').expect(200);
    expect(res.body.value).toBeGreaterThan(200);
    expect(res.body.value).toBeLessThanOrEqual(400);
  });

  it('is not bounded by maxBudgetMs, which bounds only what a client may ask for', async () => {
    const { http } = await routeServer({ budgetMs: 100, maxBudgetMs: 100 }, 3000);
    const res = await http.get('/').expect(200);
    expect(res.body.value).toBeGreaterThan(2500);
  });

  it('still applies after an earlier middleware read req.fanout, as long as no task started', async () => {
    let before = 0;
    const { http } = await serve({ budgetMs: 100 }, (app) => {
      const peek: RequestHandler = (req, _res, next) => {
        before = req.fanout.remainingMs();
        next();
      };
      app.get(
        '/',
        peek,
        budget(2000),
        report(async (req) => req.fanout.remainingMs()),
      );
    });
    const res = await http.get('/').expect(200);
    expect(before).toBeLessThanOrEqual(100);
    expect(res.body.value).toBeGreaterThan(1500);
  });

  it('is a 500 naming the fix when the request already started a task', async () => {
    let ran = false;
    const { http, errors } = await serve({ budgetMs: 1000 }, (app) => {
      app.get(
        '/',
        (req, _res, next) => {
          req.fanout.run(() => 1, 'first').then(() => next(), next);
        },
        budget(5000),
        (_req, res) => {
          ran = true;
          res.json({});
        },
      );
    });
    await http.get('/').expect(500);
    expect(ran).toBe(false);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(FanoutError);
    expect((errors[0] as FanoutError).status).toBe(500);
    expect((errors[0] as Error).message).toBe(
      '`budget(5000)` came too late for this request: Task `first` already started. Put it before the handlers ' +
        "that use `req.fanout`, as in `app.get('/report', budget(5000), handler)`",
    );
  });

  it('is a 500 saying what to mount on a route no fanout() saw', async () => {
    const { http, errors } = await serve(
      {},
      (app) => app.get('/', budget(100), (_req, res) => res.json({})),
      { mount: () => undefined },
    );
    await http.get('/').expect(500);
    // By name: the accessor that throws it may come from another test file's copy of the module (jest gives
    // each file its own globals, but node:http's prototype is shared), whose TypeError is another realm's.
    expect((errors[0] as Error).name).toBe('TypeError');
    expect((errors[0] as Error).message).toMatch(/app\.use\(fanout\(\)\)/);
  });

  it('sets the budget of both instances when a router mounts its own fanout()', async () => {
    const { http } = await serve({ budgetMs: 100 }, (app) => {
      const router = Router();
      const inner = fanout({ budgetMs: 100 });
      router.use(inner);
      router.get(
        '/',
        budget(2000),
        report(async (req) => req.fanout.run(({ remainingMs }) => remainingMs())),
      );
      app.use('/r', router);
      onCleanup(() => inner.close());
    });
    const res = await http.get('/r').expect(200);
    expect(res.body.value).toBeGreaterThan(1500);
  });
});

describe('the route budget example (docs/budgets-and-errors.md)', () => {
  it('gives /report 5 s for its one-second query and /health 50 ms before its fallback', async () => {
    const [report, health] = await Promise.all([
      timed(supertest(routeBudgetApp).get('/report')),
      timed(supertest(routeBudgetApp).get('/health')),
    ]);
    expect(report.value.status).toBe(200);
    expect(report.value.body).toEqual({ rows: ['row 1'] });
    expect(report.ms).toBeGreaterThanOrEqual(950); // past the app-wide 500 ms
    expect(health.value.body).toEqual({ db: 'unknown' });
    expect(health.ms).toBeLessThan(190); // the 50 ms budget, not the 200 ms query
  });
});

describe('budget(ms) validation', () => {
  it.each([[0], [-1], [1.5], [NaN], [Infinity], [2 ** 31], ['5000'], [undefined], [null]])(
    'throws a TypeError at route definition for %p',
    (ms) => {
      expect(() => budget(ms as number)).toThrow(TypeError);
      expect(() => budget(ms as number)).toThrow(
        /`ms` of `budget\(ms\)` to be an integer from 1 to 2147483647/,
      );
    },
  );

  it('returns a named route middleware', () => {
    expect(budget(100).name).toBe('fanoutBudget');
  });
});

describe('longer budgets that only tighten say so in a debug line', () => {
  const { serve, onCleanup } = useHarness(expressVersions[0]![1]);
  let lines: string[] = [];
  const log = createDebug.log;
  beforeEach(() => {
    lines = [];
    createDebug.enable('express-fanout');
    createDebug.log = (...args: unknown[]) => void lines.push(format(...args));
  });
  afterEach(() => {
    createDebug.log = log;
    createDebug.disable();
  });

  it('all(tasks, { budgetMs }) above the time left runs within the request budget and logs the cap', async () => {
    const { http } = await serve({ budgetMs: 200, graceMs: 50 }, (app) =>
      app.get(
        '/',
        report(async (req) => req.fanout.all({ a: never }, { budgetMs: 2000 })),
      ),
    );
    const { value: res, ms } = await timed(http.get('/'));
    expect(res.body.error).toMatchObject({ status: 504 });
    expect(ms).toBeLessThan(1500);
    expect(
      lines.some((l) => /all\(tasks, \{ budgetMs: 2000 \}\) capped at the request's \d+ ms left/.test(l)),
    ).toBe(true);
  });

  it('a second fanout({ budgetMs }) longer than the first is capped, and logs it', async () => {
    const { http } = await serve({ budgetMs: 200 }, (app) => {
      const router = Router();
      const inner = fanout({ budgetMs: 2000 });
      router.use(inner);
      router.get(
        '/',
        report(async (req) => req.fanout.remainingMs()),
      );
      app.use('/r', router);
      onCleanup(() => inner.close());
    });
    const res = await http.get('/r').expect(200);
    expect(res.body.value).toBeLessThanOrEqual(200);
    expect(
      lines.some((l) => /a 2000 ms budget capped at the 200 ms of the fanout\(\) mounted before it/.test(l)),
    ).toBe(true);
  });
});
