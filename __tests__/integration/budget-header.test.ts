import { expressVersions } from './helpers/express-versions';
import { report, timed, useHarness } from './helpers/harness';
import { never } from './helpers/async';

const H = 'x-request-budget-ms';

describe.each(expressVersions)('budget header (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  /** A server whose `/` reports the request's remaining budget and what ctx.headers() gives a task. */
  const budgetServer = (options: Parameters<typeof serve>[0]) =>
    serve({ graceMs: 50, ...options }, (app) => {
      app.get(
        '/',
        report(async (req) => ({
          remaining: req.fanout.remainingMs(),
          headers: await req.fanout.run(({ headers }) => headers()),
        })),
      );
      app.get(
        '/hang',
        report(async (req) => req.fanout.all({ a: never })),
      );
    });

  it('replaces budgetMs with a valid header value', async () => {
    const { http } = await budgetServer({ budgetMs: 10000, maxBudgetMs: 20000 });
    const res = await http.get('/').set(H, '150').expect(200);
    expect(res.body.value.remaining).toBeGreaterThan(50);
    expect(res.body.value.remaining).toBeLessThanOrEqual(150);
  });

  it('lets the header extend the budget up to maxBudgetMs', async () => {
    const { http } = await budgetServer({ budgetMs: 100, maxBudgetMs: 5000 });
    const res = await http.get('/').set(H, '3000').expect(200);
    expect(res.body.value.remaining).toBeGreaterThan(2500);
    expect(res.body.value.remaining).toBeLessThanOrEqual(3000);
  });

  it('cuts a header value above maxBudgetMs to maxBudgetMs', async () => {
    const { http } = await budgetServer({ budgetMs: 100, maxBudgetMs: 300 });
    const res = await http.get('/').set(H, '5000').expect(200);
    expect(res.body.value.remaining).toBeGreaterThan(200);
    expect(res.body.value.remaining).toBeLessThanOrEqual(300);
    const { value: hang, ms } = await timed(http.get('/hang').set(H, '99999999999'));
    expect(hang.body.ok).toBe(false);
    expect(hang.body.error.status).toBe(504);
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms).toBeLessThan(700);
  });

  it('answers by the header budget when the tasks never settle', async () => {
    const { http } = await budgetServer({ budgetMs: 5000 });
    const { value: res, ms } = await timed(http.get('/hang').set(H, '200'));
    expect(res.body.error).toMatchObject({ name: 'BudgetExceededError', status: 504 });
    expect(ms).toBeGreaterThanOrEqual(190);
    expect(ms).toBeLessThan(450);
  });

  it.each(['abc', '-5', '0', '1e9999', '1e3', '1.5', '0x10', '', ' ', '12abc', 'Infinity', 'NaN', '-0'])(
    'ignores the malformed, zero or negative header %p (never an error, never an extension)',
    async (value) => {
      const { http } = await budgetServer({ budgetMs: 800, maxBudgetMs: 5000 });
      const res = await http.get('/').set(H, value).expect(200);
      expect(res.body.ok).toBe(true);
      expect(res.body.value.remaining).toBeGreaterThan(600);
      expect(res.body.value.remaining).toBeLessThanOrEqual(800);
    },
  );

  it('never lets a huge header overflow the timer: 99999999999 with the default maxBudgetMs keeps budgetMs', async () => {
    const { http } = await budgetServer({ budgetMs: 300 });
    const { value: res, ms } = await timed(http.get('/hang').set(H, '99999999999'));
    expect(res.body.error).toMatchObject({ status: 504 });
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms).toBeLessThan(700);
  });

  it('ignores the header when budgetHeader is false, and ctx.headers() is then empty', async () => {
    const { http } = await budgetServer({ budgetMs: 800, budgetHeader: false });
    const res = await http.get('/').set(H, '100').expect(200);
    expect(res.body.value.remaining).toBeGreaterThan(600);
    expect(res.body.value.headers).toEqual({});
  });

  it('reads and writes a custom budgetHeader name', async () => {
    const { http } = await budgetServer({ budgetMs: 5000, budgetHeader: 'x-deadline-ms' });
    const custom = await http.get('/').set('x-deadline-ms', '200').expect(200);
    expect(custom.body.value.remaining).toBeLessThanOrEqual(200);
    expect(Object.keys(custom.body.value.headers)).toEqual(['x-deadline-ms']);
    // The default header name means nothing to this server.
    const other = await http.get('/').set(H, '200').expect(200);
    expect(other.body.value.remaining).toBeGreaterThan(4000);
  });

  it('gives tasks ctx.headers() with the remaining budget as an integer string', async () => {
    const { http } = await budgetServer({ budgetMs: 600 });
    const res = await http.get('/').expect(200);
    const headers = res.body.value.headers as Record<string, string>;
    expect(Object.keys(headers)).toEqual([H]);
    expect(headers[H]).toMatch(/^\d+$/);
    const ms = Number(headers[H]);
    expect(ms).toBeGreaterThan(400);
    expect(ms).toBeLessThanOrEqual(600);
  });

  it('ctx.headers() counts down: it reflects the time remaining when called, not at arrival', async () => {
    const { http } = await serve({ budgetMs: 1000 }, (app) =>
      app.get(
        '/',
        report(async (req) =>
          req.fanout.run(async ({ headers }) => {
            const first = Number(headers()[H]);
            await new Promise((resolve) => setTimeout(resolve, 300));
            return { first, second: Number(headers()[H]) };
          }),
        ),
      ),
    );
    const res = await http.get('/').expect(200);
    const { first, second } = res.body.value as { first: number; second: number };
    expect(first - second).toBeGreaterThanOrEqual(250);
    expect(second).toBeGreaterThan(0);
  });

  it('ctx.headers() carries the task deadline, tighter than the request when timeoutMs is tighter', async () => {
    const { http } = await serve({ budgetMs: 5000 }, (app) =>
      app.get(
        '/',
        report(async (req) => req.fanout.run({ run: ({ headers }) => headers(), timeoutMs: 300 })),
      ),
    );
    const res = await http.get('/').expect(200);
    expect(Number(res.body.value[H])).toBeLessThanOrEqual(300);
  });
});
