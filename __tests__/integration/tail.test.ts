import { join } from 'node:path';
import { gather, type TaskContext, type TaskEvent } from 'express-fanout';
import { deferred, delay, sleep, stubborn, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { openRequest, parseServerTiming, report, timed, useHarness } from './helpers/harness';

const METHODS = join(__dirname, '..', 'fixtures', 'worker-methods.js');

/** A task body that fails on its first `failures` attempts, then answers `value`; counts its calls. */
function flaky<T>(failures: number, value: T) {
  const seen: number[] = [];
  const run = (ctx: TaskContext): Promise<T> => {
    seen.push(ctx.attempt);
    return seen.length <= failures
      ? Promise.reject(new Error(`transient ${seen.length}`))
      : Promise.resolve(value);
  };
  return { run, seen };
}

describe.each(expressVersions)('retries, hedging, single-flight, skipping (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  describe('retries', () => {
    it('retries after a transient failure in all(): the value of the second attempt, ctx.attempt 0 then 1', async () => {
      const events: TaskEvent[] = [];
      const task = flaky(1, 'ok');
      const { http, fo } = await serve({ graceMs: 100, onTask: (e) => events.push(e) }, (app) =>
        app.get(
          '/',
          report((req) => req.fanout.all({ db: { run: task.run, retries: 2 } })),
        ),
      );
      const res = await http.get('/').expect(200);
      expect(res.body).toEqual({ ok: true, value: { db: 'ok' } });
      expect(task.seen).toEqual([0, 1]);
      expect(fo.stats()).toMatchObject({ retries: 1, retriesDenied: 0, completed: 1, failed: 0 });
      expect(events).toMatchObject([{ name: 'db', status: 'fulfilled', attempts: 2 }]);
      const entry = parseServerTiming(res.headers['server-timing']).find((e) => e.name === 'db');
      expect(entry?.desc).toBe('retried 1');
    });

    it('retries through settle(), run(), gather() and worker()', async () => {
      const settled = flaky(1, 's');
      const ran = flaky(2, 'r');
      const gathered = flaky(1, 'g');
      let workerCalls = 0;
      const { http } = await serve({ graceMs: 100, workers: { script: METHODS, maxWorkers: 1 } }, (app) => {
        app.get(
          '/settle',
          report((req) => req.fanout.settle({ s: { run: settled.run, retries: 1 } })),
        );
        app.get(
          '/run',
          report((req) => req.fanout.run({ run: ran.run, retries: { max: 2, backoffMs: 1 } }, 'r')),
        );
        app.get('/gather', gather({ g: { run: gathered.run, retries: 1 } }));
        app.get(
          '/worker',
          report((req) =>
            req.fanout.run(
              {
                run: async (ctx) => {
                  workerCalls++;
                  const sum = await ctx.worker('add', [ctx.attempt, 40]);
                  if (ctx.attempt === 0) throw new Error('transient');
                  return sum;
                },
                retries: 1,
              },
              'w',
            ),
          ),
        );
      });
      expect((await http.get('/settle').expect(200)).body.value.s).toMatchObject({
        status: 'fulfilled',
        value: 's',
      });
      expect((await http.get('/run').expect(200)).body).toEqual({ ok: true, value: 'r' });
      expect((await http.get('/gather').expect(200)).body).toEqual({ g: 'g' });
      expect((await http.get('/worker').expect(200)).body).toEqual({ ok: true, value: 41 });
      expect(ran.seen).toEqual([0, 1, 2]);
      expect(workerCalls).toBe(2);
    });

    it('stops at `max` and when retryOn says no: the last attempt’s failure stands', async () => {
      const always = flaky(99, 'never');
      const notFound = flaky(99, 'never');
      const { http, fo } = await serve({ graceMs: 100 }, (app) =>
        app.get(
          '/',
          report((req) =>
            req.fanout.settle({
              always: { run: always.run, retries: { max: 2, backoffMs: 1 } },
              notFound: { run: notFound.run, retries: { max: 2, retryOn: () => false } },
            }),
          ),
        ),
      );
      const res = await http.get('/').expect(200);
      expect(res.body.value.always).toMatchObject({ status: 'rejected' });
      expect(always.seen).toEqual([0, 1, 2]);
      expect(notFound.seen).toEqual([0]);
      expect(fo.stats().retries).toBe(2);
    });

    it('cuts an attempt at attemptTimeoutMs, aborting its signal, and retries it', async () => {
      const signals: AbortSignal[] = [];
      const { http, fo } = await serve({ graceMs: 100 }, (app) =>
        app.get(
          '/',
          report((req) =>
            req.fanout.run(
              {
                run: ({ signal, attempt }) => {
                  signals.push(signal);
                  return attempt === 0 ? delay(5000, 'stuck', signal) : delay(5, 'second', signal);
                },
                attemptTimeoutMs: 40,
                retries: { max: 1, backoffMs: 1 },
              },
              'db',
            ),
          ),
        ),
      );
      const { value: res, ms } = await timed(http.get('/').expect(200));
      expect(res.body).toEqual({ ok: true, value: 'second' });
      expect(ms).toBeLessThan(1000);
      expect(signals).toHaveLength(2);
      expect(signals[0]!.aborted).toBe(true);
      expect(signals[0]!.reason).toMatchObject({
        name: 'BudgetExceededError',
        kind: 'timeout',
        budgetMs: 40,
      });
      expect(fo.stats()).toMatchObject({ retries: 1, completed: 1 });
    });

    it('lets a retried failure fall back, and says so in Server-Timing', async () => {
      const { http } = await serve({ graceMs: 100 }, (app) =>
        app.get(
          '/',
          report((req) =>
            req.fanout.settle({
              db: {
                run: () => Promise.reject(new Error('down')),
                retries: { max: 1, backoffMs: 1 },
                fallback: 'fb',
              },
            }),
          ),
        ),
      );
      const res = await http.get('/').expect(200);
      expect(res.body.value.db).toMatchObject({ status: 'rejected', value: 'fb' });
      const entry = parseServerTiming(res.headers['server-timing']).find((e) => e.name === 'db');
      expect(entry?.raw).toMatch(/desc="fallback[,;] retried 1"/);
    });

    it('makes no retry after the deadline: an attempt that fails after it is not retried', async () => {
      let calls = 0;
      const { http, fo } = await serve({ budgetMs: 100, graceMs: 1000 }, (app) =>
        app.get(
          '/',
          report((req) =>
            req.fanout.all({
              late: {
                run: () => {
                  calls++;
                  return stubborn(200, 0).then(() => Promise.reject(new Error('late failure')));
                },
                retries: 3,
              },
            }),
          ),
        ),
      );
      const res = await http.get('/').expect(200);
      expect(res.body.error).toMatchObject({ name: 'BudgetExceededError' });
      await waitFor(() => fo.stats().running === 0, 'the late attempt to settle');
      await sleep(50);
      expect(calls).toBe(1);
      expect(fo.stats()).toMatchObject({ retries: 0, retriesDenied: 0 });
    });

    it('makes no retry when what is left of the budget cannot hold an attempt of the name’s recent median', async () => {
      let failing = false;
      let calls = 0;
      const { http, fo } = await serve({ budgetMs: 1000, graceMs: 100 }, (app) =>
        app.get(
          '/',
          report((req) =>
            req.fanout.settle({
              db: {
                run: async ({ signal }) => {
                  calls++;
                  if (!failing) return delay(60, 'ok', signal);
                  await delay(80, 0, signal);
                  throw new Error('failed late');
                },
                retries: { max: 1, backoffMs: 0 },
              },
            }),
          ),
        ),
      );
      // Five fulfilled samples of about 60 ms: the median the retry check uses.
      for (let i = 0; i < 5; i++) await http.get('/').expect(200);
      failing = true;
      calls = 0;
      // 120 ms budget, failure at ~80 ms: ~40 ms left, less than the ~60 ms an attempt takes.
      const res = await http.get('/').set('x-request-budget-ms', '120').expect(200);
      expect(res.body.value.db).toMatchObject({ status: 'rejected' });
      expect(calls).toBe(1);
      expect(fo.stats().retries).toBe(0);
    });

    it('makes no retry once the client has left, nor after a required sibling failed', async () => {
      const started = deferred();
      let calls = 0;
      const { url, http, fo } = await serve({ graceMs: 100 }, (app) => {
        app.get('/leave', (req, res) => {
          req.fanout
            .all({
              db: {
                run: ({ signal }) => {
                  calls++;
                  started.resolve();
                  return delay(5000, 'x', signal);
                },
                retries: 3,
              },
            })
            .then(
              (v) => res.json(v),
              () => undefined,
            );
        });
        app.get(
          '/sibling',
          report((req) =>
            req.fanout.all({
              broken: () => Promise.reject(new Error('required failure')),
              db: {
                run: ({ signal }) => {
                  calls++;
                  return delay(5000, 'x', signal);
                },
                retries: 3,
              },
            }),
          ),
        );
      });
      const client = openRequest(url, '/leave');
      await started.promise;
      client.abort();
      await waitFor(() => fo.stats().running === 0, 'the aborted attempt to leave');
      expect((await http.get('/sibling').expect(200)).body.error).toMatchObject({ name: 'TaskFailedError' });
      await waitFor(() => fo.stats().running === 0, 'the sibling’s slots to free');
      await sleep(50);
      expect(calls).toBe(2);
      expect(fo.stats().retries).toBe(0);
    });

    it('keeps retries within the retry budget under total failure', async () => {
      let calls = 0;
      const { http, fo } = await serve(
        { graceMs: 100, retryBudget: { ratio: 0.1, minPerSecond: 1, windowMs: 2000 } },
        (app) =>
          app.get(
            '/',
            report((req) =>
              req.fanout.settle({
                down: {
                  run: () => {
                    calls++;
                    return Promise.reject(new Error('down'));
                  },
                  retries: { max: 3, backoffMs: 1 },
                },
              }),
            ),
          ),
      );
      const requests = 20;
      for (let i = 0; i < requests; i++) await http.get('/').expect(200);
      // The reserve (1/s over 2 s = 2 tokens) plus 10 % of 20 first attempts (2 tokens): 4 retries at most,
      // where naive retries would make 60.
      const { retries, retriesDenied } = fo.stats();
      expect(retries).toBeLessThanOrEqual(4);
      expect(retries).toBeGreaterThanOrEqual(2);
      // Every request but one that used all three retries ends on a denied retry.
      expect(retriesDenied).toBeGreaterThanOrEqual(requests - 1);
      expect(calls).toBe(requests + retries);
    });
  });

  describe('hedging', () => {
    it('starts a hedge after hedgeMs; the first to fulfil wins and the loser is aborted', async () => {
      const signals: AbortSignal[] = [];
      const { http, fo } = await serve({ graceMs: 100 }, (app) =>
        app.get(
          '/',
          report((req) =>
            req.fanout.all({
              api: {
                run: ({ signal, attempt }) => {
                  signals.push(signal);
                  return attempt === 0 ? delay(5000, 'slow', signal) : delay(10, 'hedge', signal);
                },
                hedgeMs: 30,
              },
            }),
          ),
        ),
      );
      const { value: res, ms } = await timed(http.get('/').expect(200));
      expect(res.body).toEqual({ ok: true, value: { api: 'hedge' } });
      expect(ms).toBeLessThan(1000);
      expect(signals).toHaveLength(2);
      expect(signals[0]!.aborted).toBe(true);
      expect(signals[1]!.aborted).toBe(false);
      expect(fo.stats()).toMatchObject({ hedges: 1, hedgeWins: 1, completed: 1 });
      const entry = parseServerTiming(res.headers['server-timing']).find((e) => e.name === 'api');
      expect(entry?.desc).toBe('hedged');
      await waitFor(() => fo.stats().running === 0, 'the loser to give its slot back');
    });

    it('the first attempt may still win: the hedge is then the one aborted', async () => {
      const signals: AbortSignal[] = [];
      const { http, fo } = await serve({ graceMs: 100 }, (app) =>
        app.get(
          '/',
          report((req) =>
            req.fanout.run(
              {
                run: ({ signal, attempt }) => {
                  signals.push(signal);
                  return attempt === 0 ? delay(60, 'first', signal) : delay(5000, 'hedge', signal);
                },
                hedgeMs: 20,
              },
              'api',
            ),
          ),
        ),
      );
      expect((await http.get('/').expect(200)).body).toEqual({ ok: true, value: 'first' });
      expect(signals[1]!.aborted).toBe(true);
      expect(fo.stats()).toMatchObject({ hedges: 1, hedgeWins: 0 });
    });

    it('starts no hedge without a free slot: it never queues', async () => {
      let calls = 0;
      const { http, fo } = await serve({ concurrency: 1, graceMs: 100 }, (app) =>
        app.get(
          '/',
          report((req) =>
            req.fanout.all({
              api: {
                run: ({ signal }) => {
                  calls++;
                  return delay(120, 'only', signal);
                },
                hedgeMs: 20,
              },
            }),
          ),
        ),
      );
      expect((await http.get('/').expect(200)).body).toEqual({ ok: true, value: { api: 'only' } });
      expect(calls).toBe(1);
      expect(fo.stats()).toMatchObject({ hedges: 0, queued: 0 });
    });

    it('starts no hedge once the hedge budget is spent', async () => {
      let calls = 0;
      const { http, fo } = await serve(
        { graceMs: 100, hedgeBudget: { ratio: 0, minPerSecond: 1, windowMs: 1000 } },
        (app) =>
          app.get(
            '/',
            report((req) =>
              req.fanout.run(
                {
                  run: ({ signal, attempt }) => {
                    calls++;
                    return delay(attempt === 0 ? 60 : 5, 'v', signal);
                  },
                  hedgeMs: 10,
                },
                'api',
              ),
            ),
          ),
      );
      for (let i = 0; i < 3; i++) await http.get('/').expect(200);
      // One token (1/s over 1 s), no deposits: one hedge in three requests.
      expect(fo.stats().hedges).toBe(1);
      expect(calls).toBe(4);
    });
  });

  describe('single-flight (key)', () => {
    it('shares one execution across two requests; it goes on for the other when the first client leaves', async () => {
      const release = deferred<string>();
      const started = deferred();
      let executions = 0;
      let sharedSignal: AbortSignal | undefined;
      const task = {
        run: ({ signal }: TaskContext) => {
          executions++;
          sharedSignal = signal;
          started.resolve();
          return release.promise;
        },
        key: 'user:1',
      };
      const { url, http, fo } = await serve({ graceMs: 100 }, (app) =>
        app.get(
          '/',
          report((req) => req.fanout.all({ user: task })),
        ),
      );
      const first = openRequest(url, '/');
      await started.promise;
      const second = http.get('/');
      const secondDone = second.then((r) => r);
      await waitFor(() => fo.stats().coalesced === 1, 'the second request to join');
      first.abort();
      await sleep(30);
      expect(sharedSignal?.aborted).toBe(false);
      release.resolve('shared');
      const res = await secondDone;
      expect(res.body).toEqual({ ok: true, value: { user: 'shared' } });
      expect(executions).toBe(1);
      await waitFor(() => fo.stats().running === 0, 'the shared slot to free');
    });

    it('aborts the shared execution only when every waiter has left, and keeps nothing after', async () => {
      const started = deferred();
      let executions = 0;
      let sharedSignal: AbortSignal | undefined;
      const { url, fo } = await serve({ graceMs: 100 }, (app) =>
        app.get('/', (req, res) => {
          req.fanout
            .all({
              user: {
                run: ({ signal }) => {
                  executions++;
                  sharedSignal = signal;
                  started.resolve();
                  return delay(5000, 'x', signal);
                },
                key: 'user:2',
              },
            })
            .then(
              (v) => res.json(v),
              () => undefined,
            );
        }),
      );
      const a = openRequest(url, '/');
      await started.promise;
      const b = openRequest(url, '/');
      await waitFor(() => fo.stats().coalesced === 1, 'the second request to join');
      a.abort();
      await sleep(30);
      expect(sharedSignal?.aborted).toBe(false);
      b.abort();
      await waitFor(() => sharedSignal?.aborted === true, 'the execution to be aborted');
      await waitFor(() => fo.stats().running === 0, 'the slot to free');
      expect(executions).toBe(1);
    });

    it('runs equal keys of one call once; each keeps its own fallback and timeout', async () => {
      let executions = 0;
      const { http, fo } = await serve({ graceMs: 100 }, (app) =>
        app.get(
          '/',
          report((req) =>
            req.fanout.settle({
              a: {
                run: ({ signal }) => {
                  executions++;
                  return delay(80, 'v', signal);
                },
                key: 'k',
              },
              b: { run: () => 'never run', key: 'k' },
              c: { run: () => 'never run', key: 'k', timeoutMs: 20, fallback: 'fb' },
            }),
          ),
        ),
      );
      const res = await http.get('/').expect(200);
      expect(res.body.value.a).toMatchObject({ status: 'fulfilled', value: 'v' });
      expect(res.body.value.b).toMatchObject({ status: 'fulfilled', value: 'v' });
      expect(res.body.value.c).toMatchObject({ status: 'timeout', value: 'fb' });
      expect(executions).toBe(1);
      expect(fo.stats().coalesced).toBe(2);
    });
  });

  describe('skipWhenLate', () => {
    it('skips a hopeless optional task: its fallback at once, no slot, status skipped', async () => {
      let calls = 0;
      const { http, fo } = await serve({ graceMs: 100 }, (app) => {
        app.get(
          '/warm',
          report(async (req) => {
            // 20 samples of about 80 ms for the name `slow`.
            await Promise.all(
              Array.from({ length: 20 }, () => req.fanout.run(({ signal }) => delay(80, 1, signal), 'slow')),
            );
            return null;
          }),
        );
        const slow = (skipWhenLate: boolean) => ({
          slow: {
            run: () => {
              calls++;
              return 1;
            },
            fallback: 'fb',
            skipWhenLate,
          },
        });
        app.get(
          '/',
          report((req) => req.fanout.settle(slow(true))),
        );
        app.get(
          '/keep',
          report((req) => req.fanout.settle(slow(false))),
        );
      });
      await http.get('/warm').expect(200);
      const res = await http.get('/').set('x-request-budget-ms', '40').expect(200);
      expect(res.body.value.slow).toMatchObject({ status: 'skipped', value: 'fb' });
      expect(res.body.value.slow.error).toBeDefined();
      expect(calls).toBe(0);
      expect(fo.stats().skipped).toBe(1);
      const entry = parseServerTiming(res.headers['server-timing']).find((e) => e.name === 'slow');
      expect(entry?.desc).toBe('skipped');
      // `skipWhenLate: false` runs it whatever the estimate.
      const kept = await http.get('/keep').set('x-request-budget-ms', '40').expect(200);
      expect(kept.body.value.slow).toMatchObject({ status: 'fulfilled', value: 1 });
      expect(calls).toBe(1);
      // With time enough it runs again.
      expect((await http.get('/').expect(200)).body.value.slow).toMatchObject({ status: 'fulfilled' });
    });
  });
});
