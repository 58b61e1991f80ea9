import { getEventListeners } from 'node:events';
import { gather, type TaskEvent, type Tasks } from 'express-fanout';
import { deferred, delay, never, sleep, stubborn, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { report, timed, useHarness } from './helpers/harness';
import { activeTimeouts, trackTimers } from './helpers/leaks';

describe.each(expressVersions)('invariants (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  describe('the concurrency bounds', () => {
    it('never runs more than `concurrency` tasks process-wide nor `perRequest` per request, across many requests', async () => {
      const concurrency = 4;
      const perRequest = 2;
      let running = 0;
      let peak = 0;
      let peakPerRequest = 0;
      let statsPeak = 0;
      const { http, fo } = await serve({ concurrency, perRequest, budgetMs: 10000 }, (app) =>
        app.get(
          '/:id',
          report(async (req) => {
            let mine = 0;
            const task = (i: number) => async () => {
              running++;
              mine++;
              peak = Math.max(peak, running);
              peakPerRequest = Math.max(peakPerRequest, mine);
              statsPeak = Math.max(statsPeak, fo.stats().running);
              try {
                await sleep(5 + ((Number(req.params.id) * 7 + i * 3) % 20));
                return i;
              } finally {
                running--;
                mine--;
              }
            };
            const tasks: Tasks = {};
            for (let i = 0; i < 5; i++) tasks[`t${i}`] = task(i);
            return req.fanout.all(tasks);
          }),
        ),
      );
      const responses = await Promise.all(Array.from({ length: 24 }, (_, id) => http.get(`/${id}`)));
      for (const res of responses)
        expect(res.body).toEqual({ ok: true, value: { t0: 0, t1: 1, t2: 2, t3: 3, t4: 4 } });
      expect(peak).toBeLessThanOrEqual(concurrency);
      expect(peakPerRequest).toBeLessThanOrEqual(perRequest);
      expect(statsPeak).toBeLessThanOrEqual(concurrency);
      // The bounds were actually reached: the test saturated the scheduler.
      expect(peak).toBe(concurrency);
      expect(peakPerRequest).toBe(perRequest);
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0, completed: 24 * 5 });
    });

    it('counts tasks of settle(), run() and all() of one request against the same perRequest', async () => {
      let running = 0;
      let peak = 0;
      const task = async () => {
        running++;
        peak = Math.max(peak, running);
        await sleep(20);
        running--;
        return 1;
      };
      const { http } = await serve({ perRequest: 2, concurrency: 100 }, (app) =>
        app.get(
          '/',
          report(async (req) => {
            await Promise.all([
              req.fanout.all({ a: task, b: task }),
              req.fanout.settle({ c: task, d: task }),
              req.fanout.run(task, 'e'),
            ]);
          }),
        ),
      );
      await http.get('/').expect(200);
      expect(peak).toBe(2);
    });
  });

  describe('every task settles exactly once', () => {
    it('reports each task once through onTask, and the stats counters add up to the tasks submitted', async () => {
      const events: TaskEvent[] = [];
      const calls = new Map<string, number>();
      const { http, fo } = await serve(
        { concurrency: 3, perRequest: 2, budgetMs: 300, graceMs: 50, onTask: (e) => events.push(e) },
        (app) =>
          app.get(
            '/:id',
            report(async (req) => {
              const id = req.params.id!;
              const count = (name: string) =>
                calls.set(`${id}.${name}`, (calls.get(`${id}.${name}`) ?? 0) + 1);
              const t = (name: string, body: (signal: AbortSignal) => unknown) => ({
                [`${id}.${name}`]: ({ signal }: { signal: AbortSignal }) => {
                  count(name);
                  return body(signal);
                },
              });
              const tasks: Tasks = {
                ...t('ok', (s) => delay(10, 1, s)),
                ...t('sync', () => {
                  throw new Error('sync');
                }),
                ...t('rej', () => Promise.reject('str')),
                ...t('slow', (s) => delay(1000, 1, s)),
                ...t('hung', () => never()),
                ...t('late', () => stubborn(400, 1)),
              };
              const mode = Number(id) % 3;
              if (mode === 0) return req.fanout.all(tasks);
              if (mode === 1) return req.fanout.settle(tasks);
              const withFallbacks: Tasks = {};
              for (const [k, v] of Object.entries(tasks))
                withFallbacks[k] = { run: v as () => unknown, fallback: 0 };
              return req.fanout.all(withFallbacks);
            }),
          ),
      );
      const n = 9;
      await Promise.all(Array.from({ length: n }, (_, id) => http.get(`/${id}`)));
      await waitFor(() => fo.stats().running === 0 && fo.stats().queued === 0, 'every slot to free', 5000);
      await sleep(500); // let the stubborn tasks finish
      const names = events.map((e) => e.name);
      expect(new Set(names).size).toBe(names.length);
      expect(names).toHaveLength(n * 6);
      for (const [, c] of calls) expect(c).toBe(1);
      const s = fo.stats();
      expect(s.completed + s.failed + s.timedOut + s.aborted + s.shed).toBe(n * 6);
      const byStatus = (status: string) => events.filter((e) => e.status === status).length;
      expect(s.completed).toBe(byStatus('fulfilled'));
      expect(s.failed).toBe(byStatus('rejected'));
      expect(s.timedOut).toBe(byStatus('timeout'));
      expect(s.aborted).toBe(byStatus('aborted'));
      expect(s.shed).toBe(byStatus('shed'));
    });
  });

  describe('a request with a budget of B ms gets its answer by B + a few ms', () => {
    const B = 200;
    const cases: Array<[string, (app: import('express').Express) => void, number]> = [
      ['all() with a task that never settles', (app) => app.get('/', gather({ hung: never })), 504],
      [
        'all() with a task that ignores its signal',
        (app) => app.get('/', gather({ busy: () => stubborn(1500, 1) })),
        504,
      ],
      [
        'all() with a fallback on a task that never settles',
        (app) => app.get('/', gather({ hung: { run: never, fallback: 'fb' } })),
        200,
      ],
      [
        'settle() with tasks that never settle',
        (app) =>
          app.get(
            '/',
            report((req) => req.fanout.settle({ a: never, b: never })),
          ),
        200,
      ],
      [
        'run() with a task that never settles',
        (app) =>
          app.get(
            '/',
            report((req) => req.fanout.run(never)),
          ),
        200,
      ],
      [
        'a chain of `after` tasks that never settles',
        (app) => app.get('/', gather({ a: never, b: { run: () => 1, after: ['a'] } })),
        504,
      ],
    ];
    it.each(cases)('%s', async (_label, routes, status) => {
      const { http } = await serve({ budgetMs: B, graceMs: 100 }, routes);
      const { value: res, ms } = await timed(http.get('/'));
      expect(res.status).toBe(status);
      expect(ms).toBeGreaterThanOrEqual(B - 10);
      expect(ms).toBeLessThan(450);
    });

    it('counts the time spent queued: a queued task that never gets a slot times out at B', async () => {
      const gate = deferred<number>();
      let started = false;
      const { http, fo } = await serve({ concurrency: 1, budgetMs: B, maxBudgetMs: 10000 }, (app) => {
        app.get('/hold', gather({ h: () => gate.promise }));
        app.get(
          '/',
          gather({
            q: () => {
              started = true;
              return 1;
            },
          }),
        );
      });
      const hold = http
        .get('/hold')
        .set('x-request-budget-ms', '5000')
        .then((r) => r);
      await waitFor(() => fo.stats().running === 1, 'the slot to be taken');
      const { value: res, ms } = await timed(http.get('/'));
      expect(res.status).toBe(504);
      expect(ms).toBeGreaterThanOrEqual(B - 10);
      expect(ms).toBeLessThan(450);
      expect(started).toBe(false);
      expect(fo.stats().queued).toBe(0);
      gate.resolve(1);
      expect((await hold).status).toBe(200);
    });

    it('counts the time spent queued: a task that gets a slot late has only what is left of B', async () => {
      let remainingAtStart = -1;
      const { http } = await serve({ concurrency: 1, budgetMs: 500 }, (app) => {
        app.get('/hold', gather({ h: () => delay(250, 1) }));
        app.get(
          '/',
          gather({
            q: ({ remainingMs }) => {
              remainingAtStart = remainingMs();
              return 1;
            },
          }),
        );
      });
      const hold = http.get('/hold').then((r) => r);
      await sleep(20);
      await http.get('/').expect(200);
      expect(remainingAtStart).toBeGreaterThan(0);
      expect(remainingAtStart).toBeLessThanOrEqual(300);
      await hold;
    });
  });

  describe('nothing outlives its request', () => {
    it('drops the queued tasks of a request that has answered: they never start', async () => {
      const calls: string[] = [];
      const { http, fo } = await serve({ perRequest: 1, budgetMs: 5000 }, (app) =>
        app.get('/', (req, res) => {
          req.fanout
            .settle({
              first: ({ signal }) => {
                calls.push('first');
                return delay(300, 1, signal);
              },
              second: () => calls.push('second'),
            })
            .catch(() => undefined);
          res.send('early');
        }),
      );
      await http.get('/').expect(200, 'early');
      await waitFor(() => fo.stats().queued === 0, 'the queue to empty', 200);
      await sleep(400);
      expect(calls).toEqual(['first']);
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0 });
    });

    it('leaves no timer behind: tasks that throw, reject a non-Error, never settle or ignore their signal', async () => {
      const timers = trackTimers();
      try {
        // A long budget: the deadline timer of a request that answered early must be cleared, not left to fire.
        const long = await serve({ budgetMs: 10000, graceMs: 50 }, (app) => {
          app.get(
            '/sync',
            gather({
              s: () => {
                throw new Error('sync');
              },
            }),
          );
          app.get('/nonerror', gather({ n: () => Promise.reject(42) }));
          app.get('/ok', gather({ a: () => 1, b: async () => 2, c: { run: () => 3, timeoutMs: 8000 } }));
          app.get(
            '/fallback',
            gather({ f: { run: () => Promise.reject(new Error('x')), fallback: 0, timeoutMs: 8000 } }),
          );
          app.get('/timeout', gather({ t: { run: ({ signal }) => delay(1000, 1, signal), timeoutMs: 30 } }));
          app.get(
            '/settle',
            report((req) => req.fanout.settle({ a: () => 1, b: { run: () => 2, timeoutMs: 8000 } })),
          );
          app.get('/unused', (_req, res) => res.send('plain'));
        });
        const short = await serve({ budgetMs: 150, graceMs: 50 }, (app) => {
          app.get('/never', gather({ h: never }));
          app.get('/stubborn', gather({ s: () => stubborn(250, 1) }));
        });
        const baseline = activeTimeouts();
        const requests = [
          ...['/sync', '/nonerror', '/ok', '/fallback', '/timeout', '/settle', '/unused'].map(
            (p) => () => long.http.get(p),
          ),
          ...['/never', '/stubborn'].map((p) => () => short.http.get(p)),
        ];
        for (const request of requests) await request();
        await Promise.all(requests.map((request) => request()));
        await waitFor(
          () => long.fo.stats().running === 0 && short.fo.stats().running === 0,
          'every slot to free',
        );
        await sleep(350); // the stubborn tasks finish, the write-offs happen
        expect(timers.pending()).toBe(0);
        // Process-wide, ref'd timers of the HTTP client and server (sockets closing) may take a moment more.
        await waitFor(
          () => activeTimeouts() <= baseline,
          "the process's timers to return to the baseline",
          2000,
        ).catch(() => undefined);
        expect(activeTimeouts()).toBeLessThanOrEqual(baseline);
      } finally {
        timers.restore();
      }
    });

    it('leaves no listener on the request signal once its tasks have settled or been written off', async () => {
      const counts: number[] = [];
      let signal: AbortSignal | undefined;
      const { http, fo } = await serve({ budgetMs: 2000, graceMs: 50 }, (app) =>
        app.get(
          '/',
          report(async (req) => {
            signal = req.fanout.signal;
            const before = getEventListeners(signal, 'abort').length;
            for (let i = 0; i < 20; i++) {
              await req.fanout.run(({ signal: s }) => delay(1, i, s), `t${i}`);
              counts.push(getEventListeners(signal, 'abort').length);
            }
            await req.fanout.settle(
              { a: () => Promise.reject(new Error('x')), b: () => 1 },
              { budgetMs: 50 },
            );
            await req.fanout.settle({ hung: never }, { budgetMs: 50 });
            return before;
          }),
        ),
      );
      const res = await http.get('/').expect(200);
      const before = res.body.value as number;
      expect(new Set(counts)).toEqual(new Set([before]));
      await waitFor(() => fo.stats().abandoned === 1, 'the write-off');
      await sleep(20);
      expect(getEventListeners(signal!, 'abort').length).toBeLessThanOrEqual(before);
    });

    it('leaves no listener on a task signal after the task settles', async () => {
      const signals: AbortSignal[] = [];
      const { http } = await serve({}, (app) =>
        app.get(
          '/',
          gather({
            a: ({ signal }) => {
              signals.push(signal);
              return 1;
            },
            b: ({ signal }) => {
              signals.push(signal);
              return delay(20, 2, signal);
            },
          }),
        ),
      );
      await http.get('/').expect(200);
      for (const s of signals) expect(getEventListeners(s, 'abort')).toHaveLength(0);
    });
  });

  describe('no unhandled rejection, no "headers already sent"', () => {
    it('survives tasks that reject after the deadline, after a sibling failed, or after the response', async () => {
      const { http, fo } = await serve({ budgetMs: 100, graceMs: 500 }, (app) => {
        app.get(
          '/late-reject',
          gather({ x: () => stubborn(200, 0).then(() => Promise.reject(new Error('late'))) }),
        );
        app.get(
          '/sibling',
          gather({
            bad: () => Promise.reject(new Error('bad')),
            other: () => stubborn(50, 0).then(() => Promise.reject(new Error('other'))),
          }),
        );
        app.get('/early', (req, res) => {
          res.json({ early: true });
          req.fanout
            .all({ x: () => stubborn(30, 0).then(() => Promise.reject(new Error('after response'))) })
            .catch(() => undefined);
        });
        app.get(
          '/throws-object',
          gather({
            o: () => {
              throw { not: 'an error' };
            },
          }),
        );
      });
      await http.get('/late-reject').expect(504);
      await http.get('/sibling').expect(502);
      await http.get('/early').expect(200, { early: true });
      await http.get('/throws-object').expect(502);
      await waitFor(() => fo.stats().running === 0, 'every slot to free', 2000);
      await sleep(50);
    });

    it('sends one answer when the handler answers before its tasks settle', async () => {
      const { http, errors } = await serve({ serverTiming: true }, (app) =>
        app.get('/', (req, res) => {
          const p = req.fanout.all({ a: () => delay(50, 1) });
          res.send('first');
          p.then(
            () => undefined,
            () => undefined,
          );
        }),
      );
      await http.get('/').expect(200, 'first');
      await sleep(100);
      expect(errors).toEqual([]);
    });

    it('answers a rejected all() once through next(err)', async () => {
      const { http, errors } = await serve({ budgetMs: 100 }, (app) =>
        app.get('/', (req, res, next) => {
          req.fanout.all({ h: never }).then(
            (v) => res.json(v),
            (err: unknown) => next(err),
          );
        }),
      );
      await http.get('/').expect(504);
      expect(errors).toHaveLength(1);
    });
  });
});
