import express from 'express';
import { DownstreamError, fanout, MemoryLimitStore } from 'express-fanout';
import { sleep } from './helpers/async';
import { report, useHarness } from './helpers/harness';

const H = 'x-request-budget-ms';

describe('ctx.fetch() and nested deadlines', () => {
  const { serve } = useHarness(express);

  /** A callee: `/status/:code` answers it (with `Retry-After` from `?ra=`), counting calls; `/echo` the budget header. */
  async function callee() {
    const calls: Record<string, number> = {};
    const served = await serve({ budgetMs: 2000 }, (app) => {
      app.get('/status/:code', (req, res) => {
        const code = String(req.params.code);
        calls[code] = (calls[code] ?? 0) + 1;
        if (typeof req.query.ra === 'string') res.set('Retry-After', req.query.ra);
        res.status(Number(code)).json({ code, budget: req.headers[H] ?? null });
      });
      app.get('/echo', (req, res) => {
        res.json({
          budget: Number(req.headers[H]),
          deadline: req.fanout.deadline,
          custom: req.headers['x-custom'],
        });
      });
    });
    return { url: served.url, calls };
  }

  it('sends the remaining budget minus the default margin (5 ms + 5 % + the learned transit): the callee ends before the caller', async () => {
    const down = await callee();
    const { http, fo } = await serve({ budgetMs: 1000 }, (app) =>
      app.get(
        '/',
        report(async (req) =>
          req.fanout.run(async (ctx) => {
            const left = ctx.remainingMs();
            const answer = (await (
              await ctx.fetch(`${down.url}/echo`, { headers: { 'x-custom': 'kept' } })
            ).json()) as {
              budget: number;
              deadline: number;
              custom: string;
            };
            return { left, ...answer, callerDeadline: ctx.deadline };
          }),
        ),
      ),
    );
    // The first `fetch` of a process loads undici (tens of ms, a transit the margin is not meant to cover).
    await http.get('/').expect(200);
    // What the first answer taught of the way there and back (loopback: a few ms, more on a loaded machine).
    const learned = fo.stats().transit[down.url]!.marginMs;
    const { value } = (await http.get('/').expect(200)).body as {
      value: { left: number; budget: number; deadline: number; custom: string; callerDeadline: number };
    };
    expect(value.custom).toBe('kept');
    expect(value.budget).toBeLessThanOrEqual(Math.floor(value.left - 5 - value.left * 0.05) + 1);
    expect(value.budget).toBeGreaterThan(value.left * 0.95 - 5 - learned - 50);
    // The callee's deadline, in the same clock, falls before the caller's by about the margin.
    expect(value.callerDeadline - value.deadline).toBeGreaterThanOrEqual(25);
  });

  it('propagationMarginMs: a fixed margin, and req.fanout.headers() for calls made outside a task', async () => {
    const { http } = await serve({ budgetMs: 1000, propagationMarginMs: 200 }, (app) =>
      app.get(
        '/',
        report(async (req) => ({
          left: req.fanout.remainingMs(),
          request: Number(req.fanout.headers()[H]),
          task: Number((await req.fanout.run(({ headers }) => headers()))[H]),
        })),
      ),
    );
    const { value } = (await http.get('/').expect(200)).body as {
      value: { left: number; request: number; task: number };
    };
    expect(value.request).toBeLessThanOrEqual(Math.ceil(value.left) - 200);
    expect(value.request).toBeGreaterThan(value.left - 200 - 50);
    expect(value.task).toBeLessThanOrEqual(value.request);
  });

  it('never sends 0 (which a callee would ignore): a margin larger than the time left sends 1', async () => {
    const { http } = await serve({ budgetMs: 100, propagationMarginMs: 500 }, (app) =>
      app.get(
        '/',
        report(async (req) => req.fanout.headers()),
      ),
    );
    expect((await http.get('/').expect(200)).body.value).toEqual({ [H]: '1' });
  });

  it('validates propagationMarginMs and limits at fanout() time', () => {
    expect(() => fanout({ propagationMarginMs: -1 })).toThrow(
      'Expected `propagationMarginMs` to be an integer from 0 to 2147483647, got `-1` (number)',
    );
    expect(() => fanout({ propagationMarginMs: { ratio: 1 } })).toThrow(/propagationMarginMs\.ratio/);
    expect(() => fanout({ propagationMarginMs: { rate: 0.1 } as never })).toThrow(
      'Unknown option `propagationMarginMs.rate`. Did you mean `propagationMarginMs.ratio`?',
    );
    expect(() => fanout({ propagationMarginMs: '5' as never })).toThrow(TypeError);
    expect(() => fanout({ limits: { payments: { concurrency: 0 } } })).toThrow(
      'Expected `limits.payments.concurrency` to be an integer >= 1, got `0` (number)',
    );
    expect(() => fanout({ limits: { payments: { concurrency: 2, store: {} as never } } })).toThrow(
      /limits\.payments\.store/,
    );
    expect(() => fanout({ limits: { payments: { concurency: 2 } as never } })).toThrow(/Did you mean/);
    expect(() => fanout({ propagationMarginMs: { ms: 2, ratio: 0.1 }, limits: {} })).not.toThrow();
  });

  it('maps the callee’s answers: 504 is a timeout, 503 a shed, 499 and other 5xx failures, 4xx a Response', async () => {
    const down = await callee();
    const { http } = await serve({ budgetMs: 1000 }, (app) =>
      app.get(
        '/',
        report(async (req) => {
          const settled = await req.fanout.settle({
            t504: (ctx) => ctx.fetch(`${down.url}/status/504`),
            t503: (ctx) => ctx.fetch(`${down.url}/status/503?ra=2`),
            t499: (ctx) => ctx.fetch(`${down.url}/status/499`),
            t500: (ctx) => ctx.fetch(`${down.url}/status/500?secret=1`),
            t404: async (ctx) => (await ctx.fetch(`${down.url}/status/404`)).status,
          });
          const out: Record<string, unknown> = {};
          for (const [name, s] of Object.entries(settled)) {
            const e = s.error as DownstreamError | undefined;
            out[name] = {
              status: s.status,
              value: s.value,
              error: e && {
                name: e.name,
                status: e.status,
                downstream: e.downstreamStatus,
                retryAfterMs: e.retryAfterMs,
                message: e.message,
              },
            };
          }
          return out;
        }),
      ),
    );
    const v = (await http.get('/').expect(200)).body.value;
    expect(v.t504).toMatchObject({
      status: 'timeout',
      error: { name: 'DownstreamError', status: 504, downstream: 504 },
    });
    expect(v.t503).toMatchObject({
      status: 'shed',
      error: { status: 503, downstream: 503, retryAfterMs: 2000 },
    });
    expect(v.t499).toMatchObject({ status: 'rejected', error: { status: 502, downstream: 499 } });
    expect(v.t500).toMatchObject({ status: 'rejected', error: { status: 502, downstream: 500 } });
    expect(v.t500.error.message).not.toContain('secret');
    expect(v.t404).toMatchObject({ status: 'fulfilled', value: 404 });
  });

  it('keeps the status across a hop: a required task’s 504 answers 504, its 503 answers 503 with Retry-After', async () => {
    const down = await callee();
    const { http } = await serve({ budgetMs: 1000 }, (app) => {
      app.get('/504', async (req, res, next) => {
        try {
          await req.fanout.all({ leaf: (ctx) => ctx.fetch(`${down.url}/status/504`) });
          res.end();
        } catch (error) {
          next(error);
        }
      });
      app.get('/503', async (req, res, next) => {
        try {
          await req.fanout.all({ leaf: (ctx) => ctx.fetch(`${down.url}/status/503?ra=3`) });
          res.end();
        } catch (error) {
          next(error);
        }
      });
    });
    await http.get('/504').expect(504);
    const shed = await http.get('/503').expect(503);
    expect(shed.headers['retry-after']).toBe('3');
  });

  it('drives retries: a 500 is retried, a 499 never, a 503 not before its Retry-After', async () => {
    const down = await callee();
    const { http } = await serve({ budgetMs: 400 }, (app) =>
      app.get(
        '/',
        report(async (req) => {
          const retries = { max: 2, backoffMs: 1 };
          const s = await req.fanout.settle({
            a: { run: (ctx) => ctx.fetch(`${down.url}/status/500`), retries },
            b: { run: (ctx) => ctx.fetch(`${down.url}/status/499`), retries },
            // Retry-After 1 s is past the 400 ms budget: no retry.
            c: { run: (ctx) => ctx.fetch(`${down.url}/status/503?ra=1`), retries },
            // No Retry-After: retried like any failure.
            d: { run: (ctx) => ctx.fetch(`${down.url}/status/502`), retries },
          });
          return Object.fromEntries(Object.entries(s).map(([k, r]) => [k, r.status]));
        }),
      ),
    );
    const { value } = (await http.get('/').expect(200)).body;
    expect(value).toEqual({ a: 'rejected', b: 'rejected', c: 'shed', d: 'rejected' });
    expect(down.calls).toEqual({ '500': 3, '499': 1, '503': 1, '502': 3 });
  });

  it('passes the attempt’s signal: the callee sees the call end when the task times out', async () => {
    let closed = false;
    const slow = await serve({ budgetMs: 5000 }, (app) =>
      app.get('/', (_req, res) => {
        res.on('close', () => (closed = !res.writableEnded));
        setTimeout(() => res.end('late'), 2000).unref();
      }),
    );
    const { http } = await serve({ budgetMs: 1000 }, (app) =>
      app.get(
        '/',
        report(
          async (req) =>
            (await req.fanout.settle({ a: { run: (ctx) => ctx.fetch(slow.url), timeoutMs: 100 } })).a.status,
        ),
      ),
    );
    expect((await http.get('/').expect(200)).body.value).toBe('timeout');
    for (let i = 0; i < 50 && !closed; i++) await sleep(10);
    expect(closed).toBe(true);
  });

  it('limits: at most `concurrency` tasks of a limit run at once, the wait counts against the budget', async () => {
    const store = new MemoryLimitStore();
    let running = 0;
    let peak = 0;
    const { http } = await serve({ budgetMs: 200, limits: { pay: { concurrency: 2, store } } }, (app) =>
      app.get(
        '/',
        report(async (req) => {
          const s = await req.fanout.settle(
            Object.fromEntries(
              Array.from({ length: 6 }, (_, i) => [
                `t${i}`,
                {
                  limit: 'pay',
                  run: async () => {
                    peak = Math.max(peak, ++running);
                    await sleep(80);
                    running--;
                    return i;
                  },
                },
              ]),
            ),
          );
          return Object.values(s).map((r) => r.status);
        }),
      ),
    );
    const statuses = (await http.get('/').expect(200)).body.value as string[];
    expect(peak).toBe(2);
    expect(statuses.filter((s) => s === 'fulfilled').length).toBeGreaterThanOrEqual(2);
    expect(statuses.filter((s) => s === 'fulfilled').length).toBeLessThan(6);
    expect(statuses.filter((s) => s !== 'fulfilled').every((s) => s === 'timeout')).toBe(true);
    // The timed-out tasks ignore their signal: each keeps its permit until it settles, then gives it back.
    await sleep(120);
    expect(store.held('pay')).toBe(0);
  });

  it('limits: a task naming an unknown limit fails with a TypeError naming it', async () => {
    const { http } = await serve({ budgetMs: 300, limits: { pay: { concurrency: 1 } } }, (app) =>
      app.get(
        '/',
        report(async (req) => {
          const s = await req.fanout.settle({ t: { limit: 'payz', run: () => 1 } });
          return (s.t.error as Error).message;
        }),
      ),
    );
    expect((await http.get('/').expect(200)).body.value).toMatch(/Unknown limit `payz`.*`pay`/);
  });

  it('limits: a store that fails opens to the local bound, counted in stats().limitFailOpen', async () => {
    const broken = {
      acquire: () => Promise.reject(new Error('ECONNREFUSED')),
      release: () => Promise.reject(new Error('ECONNREFUSED')),
    };
    let running = 0;
    let peak = 0;
    const { http, fo } = await serve(
      { budgetMs: 1000, limits: { pay: { concurrency: 1, store: broken } } },
      (app) =>
        app.get(
          '/',
          report(async (req) =>
            req.fanout.all({
              a: {
                limit: 'pay',
                run: async () => ((peak = Math.max(peak, ++running)), await sleep(30), running--),
              },
              b: {
                limit: 'pay',
                run: async () => ((peak = Math.max(peak, ++running)), await sleep(30), running--),
              },
            }),
          ),
        ),
    );
    await http.get('/').expect(200);
    expect(peak).toBe(1);
    expect(fo.stats().limitFailOpen).toBe(2);
  });
});
