import type { RequestHandler } from 'express';
import { fanout, gather } from 'express-fanout';
import { zeroStats } from '../fixtures/zero-stats';
import { deferred, delay, never, sleep, waitFor, within, isSettled } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { report, route, timed, useHarness } from './helpers/harness';

describe.each(expressVersions)('middleware (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('gives every later handler a req.fanout with all, settle, run, signal, deadline, remainingMs and timings', async () => {
    const { http } = await serve({}, (app) => {
      app.get('/', (req, res) => {
        const f = req.fanout;
        res.json({
          all: typeof f.all,
          settle: typeof f.settle,
          run: typeof f.run,
          remainingMs: typeof f.remainingMs,
          timings: typeof f.timings,
          signal: f.signal instanceof AbortSignal,
          deadline: typeof f.deadline,
        });
      });
    });
    const res = await http.get('/').expect(200);
    expect(res.body).toEqual({
      all: 'function',
      settle: 'function',
      run: 'function',
      remainingMs: 'function',
      timings: 'function',
      signal: true,
      deadline: 'number',
    });
  });

  it('keeps req.fanout when a later middleware replaces res.locals, and adds nothing to the request itself', async () => {
    const { http } = await serve({}, (app) => {
      app.use((_req, res, next) => {
        res.locals = { user: 'ada' };
        next();
      });
      app.get('/', async (req, res) => {
        const symbols = Object.getOwnPropertySymbols(req).map(String);
        res.json({
          ...(await req.fanout.all({ a: async () => 1, b: async () => 2 })),
          symbols,
          user: res.locals.user,
        });
      });
    });
    const res = await http.get('/').expect(200);
    expect(res.body).toMatchObject({ a: 1, b: 2, user: 'ada' });
    expect(res.body.symbols.join()).not.toMatch(/express-fanout/);
  });

  it('answers every request with a clear 500 when mounted without being called: app.use(fanout)', async () => {
    const { http } = await serve({}, (app) => app.get('/', (_req, res) => res.send('unreachable')), {
      mount: (app) => app.use(fanout as unknown as RequestHandler),
    });
    const { value: res, ms } = await timed(http.get('/').timeout(3000));
    expect(res.status).toBe(500);
    expect(res.text).toContain('fanout()');
    expect(ms).toBeLessThan(2000);
    // And it keeps answering, request after request.
    await http.get('/').timeout(3000).expect(500);
  });

  it('costs a request that never touches req.fanout no Server-Timing header and nothing in stats', async () => {
    const { http, fo } = await serve({ serverTiming: true }, (app) => {
      app.get('/', (_req, res) => res.send('plain'));
    });
    for (let i = 0; i < 5; i++) {
      const res = await http.get('/').expect(200, 'plain');
      expect(res.headers['server-timing']).toBeUndefined();
    }
    expect(fo.stats()).toEqual(zeroStats);
  });

  it('counts the budget from when the middleware saw the request, even if req.fanout is first used later', async () => {
    const { http } = await serve({ budgetMs: 1000 }, (app) => {
      app.use((_req, _res, next) => void setTimeout(next, 200));
      app.get(
        '/',
        report(async (req) => ({ remaining: req.fanout.remainingMs() })),
      );
    });
    const res = await http.get('/').expect(200);
    expect(res.body.value.remaining).toBeLessThanOrEqual(810);
    expect(res.body.value.remaining).toBeGreaterThan(400);
  });

  it('sets req.fanout.deadline to the arrival time plus the budget, in epoch ms', async () => {
    let arrived = 0;
    const { http } = await serve(
      { budgetMs: 700 },
      (app) => {
        app.get(
          '/',
          report(async (req) => ({
            offset: req.fanout.deadline - arrived,
            remaining: req.fanout.remainingMs(),
          })),
        );
      },
      {
        before: (app) =>
          app.use((_req, _res, next) => {
            arrived = Date.now();
            next();
          }),
      },
    );
    const res = await http.get('/').expect(200);
    expect(res.body.value.offset).toBeGreaterThanOrEqual(690);
    expect(res.body.value.offset).toBeLessThanOrEqual(760);
    expect(res.body.value.remaining).toBeGreaterThan(500);
    expect(res.body.value.remaining).toBeLessThanOrEqual(700);
    expect(Number.isFinite(res.body.value.remaining)).toBe(true);
  });

  it('aborts req.fanout.signal at the request deadline and never reports a negative remainingMs', async () => {
    const { http } = await serve({ budgetMs: 100 }, (app) => {
      app.get(
        '/',
        report(async (req) => {
          const { signal } = req.fanout;
          const before = signal.aborted;
          await sleep(250);
          return { before, after: signal.aborted, remaining: req.fanout.remainingMs() };
        }),
      );
    });
    const res = await http.get('/').expect(200);
    expect(res.body.value).toEqual({ before: false, after: true, remaining: 0 });
  });

  it('reports the tasks of the request so far with timings()', async () => {
    const { http } = await serve({ perRequest: 1 }, (app) => {
      app.get(
        '/',
        report(async (req) => {
          const first = deferred<string>();
          const during = req.fanout.settle({
            a: () => first.promise,
            b: () => 'b',
            c: { run: ({ results }) => results.a, after: ['a'] },
          });
          await waitFor(() => req.fanout.timings().length >= 2, 'a and b to be submitted');
          await sleep(20);
          const snapshot = req.fanout.timings().map(({ name, status }) => ({ name, status }));
          first.resolve('A');
          await during;
          const end = req.fanout.timings();
          return { snapshot, end };
        }),
      );
    });
    const res = await http.get('/').expect(200);
    const { snapshot, end } = res.body.value as {
      snapshot: { name: string; status: string }[];
      end: { name: string; start: number; ms: number; status: string }[];
    };
    const statusOf = (name: string) => snapshot.find((t) => t.name === name)?.status;
    expect(statusOf('a')).toBe('running');
    expect(statusOf('b')).toBe('queued');
    // c waits for a: either not listed yet or listed as waiting.
    expect([undefined, 'waiting']).toContain(statusOf('c'));
    expect(end.map((t) => t.name).sort()).toEqual(['a', 'b', 'c']);
    for (const t of end) {
      expect(t.status).toBe('fulfilled');
      expect(t.start).toBeGreaterThanOrEqual(0);
      expect(t.ms).toBeGreaterThanOrEqual(0);
    }
  });

  describe('stats()', () => {
    it('counts running and queued tasks live', async () => {
      const gate = deferred<number>();
      const { http, fo } = await serve({ concurrency: 2, perRequest: 8 }, (app) => {
        app.get(
          '/',
          report(async (req) =>
            req.fanout.all({
              a: () => gate.promise,
              b: () => gate.promise,
              c: () => gate.promise,
              d: () => gate.promise,
            }),
          ),
        );
      });
      const pending = http.get('/').then((r) => r);
      await waitFor(() => fo.stats().queued === 2, 'two tasks queued');
      expect(fo.stats()).toMatchObject({ running: 2, queued: 2 });
      gate.resolve(1);
      const res = await pending;
      expect(res.body).toEqual({ ok: true, value: { a: 1, b: 1, c: 1, d: 1 } });
      await waitFor(() => fo.stats().running === 0, 'slots to free');
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0, completed: 4 });
    });

    it('counts completed, failed and timed-out tasks', async () => {
      const { http, fo } = await serve({}, (app) => {
        app.get(
          '/',
          report(async (req) =>
            req.fanout.settle({
              ok: () => 1,
              ok2: async () => 2,
              bad: () => {
                throw new Error('bad');
              },
              slow: { run: ({ signal }) => delay(2000, 3, signal), timeoutMs: 50 },
            }),
          ),
        );
      });
      await http.get('/').expect(200);
      await waitFor(() => fo.stats().running === 0, 'slots to free');
      expect(fo.stats()).toMatchObject({
        completed: 2,
        failed: 1,
        timedOut: 1,
        aborted: 0,
        shed: 0,
        abandoned: 0,
      });
    });

    it('counts shed tasks', async () => {
      const gate = deferred<string>();
      const { http, fo } = await serve({ concurrency: 1, maxQueue: 0 }, (app) => {
        app.get('/hold', gather({ x: () => gate.promise }));
        app.get('/other', gather({ y: () => 'y' }));
      });
      const hold = http.get('/hold').then((r) => r);
      await waitFor(() => fo.stats().running === 1, 'the slot to be taken');
      await http.get('/other').expect(503);
      expect(fo.stats().shed).toBe(1);
      gate.resolve('x');
      expect((await hold).body).toEqual({ x: 'x' });
    });
  });

  describe('close()', () => {
    it('sheds tasks submitted after close() with a 503 and Retry-After', async () => {
      const { http, fo } = await serve({}, (app) => app.get('/', gather({ a: () => 'a' })));
      await http.get('/').expect(200, { a: 'a' });
      await fo.close();
      const res = await http.get('/').timeout(3000);
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toMatch(/^\d+$/);
    });

    it('resolves once the running tasks have settled, and lets them answer their requests', async () => {
      const gate = deferred<string>();
      let started = false;
      const { http, fo } = await serve({}, (app) =>
        app.get(
          '/',
          gather({
            a: () => {
              started = true;
              return gate.promise;
            },
          }),
        ),
      );
      const pending = http.get('/').then((r) => r);
      await waitFor(() => started, 'the task to start');
      const closing = fo.close();
      await sleep(50);
      expect(await isSettled(closing)).toBe(false);
      gate.resolve('done');
      await within(closing, 2000, 'close()');
      const res = await pending;
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ a: 'done' });
      expect(fo.stats()).toMatchObject({ running: 0, completed: 1 });
    });

    it('resolves even when a running task never settles: it is written off after its deadline and graceMs', async () => {
      let started = false;
      const { http, fo } = await serve({ budgetMs: 200, graceMs: 100 }, (app) =>
        app.get(
          '/',
          gather({
            a: () => {
              started = true;
              return never();
            },
          }),
        ),
      );
      const pending = http.get('/').then((r) => r);
      await waitFor(() => started, 'the task to start');
      const { ms } = await timed(within(fo.close(), 3000, 'close()'));
      expect(ms).toBeLessThan(1500);
      expect((await pending).status).toBe(504);
      expect(fo.stats()).toMatchObject({ running: 0, abandoned: 1 });
    });

    it('can be called more than once', async () => {
      const fo = fanout();
      await fo.close();
      await within(fo.close(), 1000, 'second close()');
      await within(Promise.all([fo.close(), fo.close()]), 1000, 'concurrent close()');
    });

    it('keeps answering plain requests that do not use req.fanout after close()', async () => {
      const { http, fo } = await serve({}, (app) => app.get('/', (_req, res) => res.send('ok')));
      await fo.close();
      await http.get('/').expect(200, 'ok');
    });
  });

  it('passes errors of handlers to Express on both majors (route helper sanity)', async () => {
    const { http, errors } = await serve({}, (app) =>
      app.get(
        '/',
        route(async () => {
          throw Object.assign(new Error('teapot'), { status: 418, expose: true });
        }),
      ),
    );
    await http.get('/').expect(418);
    expect(errors).toHaveLength(1);
  });
});
