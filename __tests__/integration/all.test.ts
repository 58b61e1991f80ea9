import { BudgetExceededError, type Fanout, type TaskContext } from 'express-fanout';
import { deferred, delay, never, sleep, stubborn, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { report, timed, useHarness } from './helpers/harness';

describe.each(expressVersions)('req.fanout.all() (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  /** A server with one route whose handler body is `fn`; answers with report() JSON. */
  const one = (fn: (f: Fanout) => Promise<unknown>, options: Parameters<typeof serve>[0] = {}) =>
    serve({ graceMs: 100, ...options }, (app) =>
      app.get(
        '/',
        report((req) => fn(req.fanout)),
      ),
    );

  it('resolves with every task value, by task name, typed from the tasks', async () => {
    const { http } = await one(async (fo) => {
      const r = await fo.all({
        n: () => 1,
        s: async () => 'two',
        o: { run: () => Promise.resolve({ three: 3 }) },
        f: { run: (): number => Number.NaN, fallback: null },
      });
      // Compile-time checks of the result type.
      const n: number = r.n;
      const s: string = r.s;
      const o: { three: number } = r.o;
      const f: number | null = r.f;
      return { n, s, o, f };
    });
    const res = await http.get('/').expect(200);
    expect(res.body).toEqual({ ok: true, value: { n: 1, s: 'two', o: { three: 3 }, f: null } });
  });

  it('resolves an empty task set with an empty object', async () => {
    const { http } = await one((f) => f.all({}));
    expect((await http.get('/').expect(200)).body).toEqual({ ok: true, value: {} });
  });

  it('runs the tasks together: 100 + 200 + 300 ms of waiting takes about 300 ms, not 600', async () => {
    const { http } = await one((f) =>
      f.all({
        file: ({ signal }) => delay(100, 'file', signal),
        db: ({ signal }) => delay(200, 'db', signal),
        api: ({ signal }) => delay(300, 'api', signal),
      }),
    );
    const { value: res, ms } = await timed(http.get('/'));
    expect(res.body).toEqual({ ok: true, value: { file: 'file', db: 'db', api: 'api' } });
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms).toBeLessThan(520);
  });

  it('gives each task a context: its signal, deadline, remainingMs(), results, attempt and headers()', async () => {
    const { http } = await one(
      async (f) => {
        const ctx = await f.run((c: TaskContext) => c);
        return {
          signal: ctx.signal instanceof AbortSignal && !ctx.signal.aborted,
          // Both are read as Date.now() plus the time left: Date.now()'s whole milliseconds allow 1 ms between reads.
          deadline: ctx.deadline <= f.deadline + 1 && ctx.deadline > Date.now(),
          remaining: ctx.remainingMs() > 0 && ctx.remainingMs() <= 1000,
          results: ctx.results,
          attempt: ctx.attempt,
          headers: typeof ctx.headers(),
        };
      },
      { budgetMs: 1000 },
    );
    const res = await http.get('/').expect(200);
    expect(res.body.value).toEqual({
      signal: true,
      deadline: true,
      remaining: true,
      results: {},
      attempt: 0,
      headers: 'object',
    });
  });

  describe('when a required task fails', () => {
    it('rejects with TaskFailedError (502) naming the task, with the original as cause but not in the message', async () => {
      const { http } = await one((f) =>
        f.all({
          ok: () => 'fine',
          db: async () => {
            throw new Error('secret connection string');
          },
        }),
      );
      const res = await http.get('/').expect(200);
      expect(res.body.ok).toBe(false);
      expect(res.body.error).toMatchObject({
        name: 'TaskFailedError',
        status: 502,
        expose: false,
        tasks: ['db'],
        cause: { name: 'Error', message: 'secret connection string' },
      });
      expect(res.body.error.message).toContain('db');
      expect(res.body.error.message).not.toContain('secret connection string');
    });

    it('aborts the siblings: their ctx.signal becomes aborted', async () => {
      const signals: Record<string, AbortSignal> = {};
      const { http } = await one(async (f) => {
        try {
          await f.all({
            slow: ({ signal }) => {
              signals.slow = signal;
              return delay(5000, 'slow', signal);
            },
            stubborn: ({ signal }) => {
              signals.stubborn = signal;
              return never();
            },
            bad: async ({ signal }) => {
              signals.bad = signal;
              await sleep(30);
              throw new Error('bad');
            },
          });
        } catch (error) {
          return {
            rejected: (error as Error).name,
            slow: signals.slow?.aborted,
            stubborn: signals.stubborn?.aborted,
          };
        }
        return 'resolved';
      });
      const { value: res, ms } = await timed(http.get('/'));
      expect(res.body.value).toEqual({ rejected: 'TaskFailedError', slow: true, stubborn: true });
      // It rejects at the failure, without waiting for the siblings (one of which ignores its signal).
      expect(ms).toBeLessThan(600);
    });

    it('rejects with TaskFailedError when the task throws synchronously', async () => {
      const { http } = await one((f) =>
        f.all({
          sync: () => {
            throw new RangeError('sync');
          },
        }),
      );
      const res = await http.get('/').expect(200);
      expect(res.body.error).toMatchObject({
        name: 'TaskFailedError',
        status: 502,
        tasks: ['sync'],
        cause: { name: 'RangeError', message: 'sync' },
      });
    });

    it.each([
      ['a string', 'nope'],
      ['a number', 42],
      ['null', null],
      ['an object', { code: 'E' }],
    ])('rejects with TaskFailedError whose cause is the non-Error thrown: %s', async (_label, thrown) => {
      const { http } = await one((f) => f.all({ odd: () => Promise.reject(thrown) }));
      const res = await http.get('/').expect(200);
      expect(res.body.error).toMatchObject({ name: 'TaskFailedError', status: 502, tasks: ['odd'] });
      expect(res.body.error.cause).toEqual({ value: thrown });
    });

    it('rejects with TaskFailedError when a task rejects with undefined', async () => {
      let cause: unknown = 'unset';
      const { http } = await one(async (f) => {
        try {
          return await f.all({ undef: () => Promise.reject(undefined) });
        } catch (error) {
          cause = (error as Error).cause;
          throw error;
        }
      });
      const res = await http.get('/').expect(200);
      expect(res.body.error).toMatchObject({ name: 'TaskFailedError', status: 502, tasks: ['undef'] });
      expect(cause).toBeUndefined();
    });
  });

  describe('fallback', () => {
    it('uses a fallback value when the task fails, and the call resolves', async () => {
      const { http } = await one((f) =>
        f.all({
          a: () => 'a',
          b: {
            run: () => {
              throw new Error('x');
            },
            fallback: 'fb',
          },
        }),
      );
      expect((await http.get('/').expect(200)).body).toEqual({ ok: true, value: { a: 'a', b: 'fb' } });
    });

    it('keeps a falsy fallback value (null, 0, false, empty string) as it is', async () => {
      const fail = () => Promise.reject(new Error('x'));
      const { http } = await one((f) =>
        f.all({
          n: { run: fail, fallback: null },
          z: { run: fail, fallback: 0 },
          f: { run: fail, fallback: false },
          e: { run: fail, fallback: '' },
        }),
      );
      expect((await http.get('/').expect(200)).body.value).toEqual({ n: null, z: 0, f: false, e: '' });
    });

    it('calls a fallback function with the error the task ended with', async () => {
      const seen: unknown[] = [];
      const original = new Error('original');
      const { http } = await one((f) =>
        f.all({
          b: {
            run: () => Promise.reject(original),
            fallback: (error: unknown) => {
              seen.push(error);
              return 'from-fn';
            },
          },
        }),
      );
      expect((await http.get('/').expect(200)).body.value).toEqual({ b: 'from-fn' });
      expect(seen).toHaveLength(1);
      expect(seen[0]).toBe(original);
    });

    it('uses the fallback when the task times out, and passes it a BudgetExceededError', async () => {
      const seen: unknown[] = [];
      const { http } = await one((f) =>
        f.all({
          a: () => 'a',
          slow: {
            run: ({ signal }) => delay(3000, 'slow', signal),
            timeoutMs: 100,
            fallback: (error: unknown) => {
              seen.push(error);
              return 'late';
            },
          },
        }),
      );
      const { value: res, ms } = await timed(http.get('/'));
      expect(res.body.value).toEqual({ a: 'a', slow: 'late' });
      expect(seen[0]).toBeInstanceOf(BudgetExceededError);
      expect(ms).toBeGreaterThanOrEqual(90);
      expect(ms).toBeLessThan(450);
    });

    it('uses the fallback at the request deadline even when the task ignores its signal and never settles', async () => {
      const { http } = await one((f) => f.all({ a: () => 'a', hung: { run: never, fallback: 'fb' } }), {
        budgetMs: 200,
      });
      const { value: res, ms } = await timed(http.get('/'));
      expect(res.body).toEqual({ ok: true, value: { a: 'a', hung: 'fb' } });
      expect(ms).toBeGreaterThanOrEqual(190);
      expect(ms).toBeLessThan(450);
    });
  });

  describe('budget', () => {
    it('rejects with BudgetExceededError (504) at the deadline naming every required task still unfinished, queued ones included', async () => {
      const signals: AbortSignal[] = [];
      const { http } = await one(
        (f) =>
          f.all({
            done: () => 'done',
            optional: { run: never, fallback: 'fb' },
            running: ({ signal }) => {
              signals.push(signal);
              return delay(5000, 'x', signal);
            },
            stubborn: ({ signal }) => {
              signals.push(signal);
              return never();
            },
            queued: () => 'never started',
          }),
        { budgetMs: 300, perRequest: 3 },
      );
      const { value: res, ms } = await timed(http.get('/'));
      expect(res.body.error).toMatchObject({ name: 'BudgetExceededError', status: 504, expose: false });
      expect([...res.body.error.tasks].sort()).toEqual(['queued', 'running', 'stubborn']);
      for (const name of ['queued', 'running', 'stubborn']) expect(res.body.error.message).toContain(name);
      expect(res.body.error.message).not.toContain('optional');
      // The deadline aborted the running tasks' signals.
      expect(signals).toHaveLength(2);
      for (const signal of signals) expect(signal.aborted).toBe(true);
      expect(ms).toBeGreaterThanOrEqual(290);
      expect(ms).toBeLessThan(550);
    });

    it('rejects with BudgetExceededError naming only the task whose own timeoutMs ran out, and aborts it', async () => {
      let signal: AbortSignal | undefined;
      const { http } = await one((f) =>
        f.all({
          fast: () => delay(20, 'fast'),
          slow: {
            run: (ctx) => {
              signal = ctx.signal;
              return delay(3000, 'slow', ctx.signal);
            },
            timeoutMs: 150,
          },
        }),
      );
      const { value: res, ms } = await timed(http.get('/'));
      expect(signal?.aborted).toBe(true);
      expect(res.body.error).toMatchObject({ name: 'BudgetExceededError', status: 504, tasks: ['slow'] });
      expect(res.body.error.message).toContain('150');
      expect(ms).toBeGreaterThanOrEqual(140);
      expect(ms).toBeLessThan(450);
    });

    it('counts timeoutMs from when the task is ready: after its dependencies resolve', async () => {
      const { http } = await one((f) =>
        f.all({
          first: () => delay(250, 1),
          second: {
            run: ({ results }) => delay(100, (results.first as number) + 1),
            after: ['first'],
            timeoutMs: 200,
          },
        }),
      );
      const { value: res, ms } = await timed(http.get('/'));
      expect(res.body).toEqual({ ok: true, value: { first: 1, second: 2 } });
      expect(ms).toBeGreaterThanOrEqual(340);
    });

    it('counts timeoutMs over the time spent queued: a task that waited past it times out without starting', async () => {
      let started = false;
      const { http } = await one(
        (f) =>
          f.settle({
            hog: () => delay(300, 'hog'),
            late: {
              run: () => {
                started = true;
                return 'late';
              },
              timeoutMs: 100,
            },
          }),
        { perRequest: 1 },
      );
      const res = await http.get('/').expect(200);
      expect(res.body.value.hog.status).toBe('fulfilled');
      expect(res.body.value.late.status).toBe('timeout');
      expect(started).toBe(false);
    });

    it('tightens the budget for one call with all(tasks, { budgetMs }), leaving the request budget for later calls', async () => {
      const { http } = await one(
        async (f) => {
          const t0 = Date.now();
          let first: string;
          try {
            await f.all({ hung: never }, { budgetMs: 100 });
            first = 'resolved';
          } catch (error) {
            first = (error as Error).name;
          }
          const firstMs = Date.now() - t0;
          const second = await f.all({ slow: () => delay(300, 'slow') });
          return { first, firstMs, second, remaining: f.remainingMs() };
        },
        { budgetMs: 3000 },
      );
      const res = await http.get('/').expect(200);
      expect(res.body.value.first).toBe('BudgetExceededError');
      expect(res.body.value.firstMs).toBeGreaterThanOrEqual(90);
      expect(res.body.value.firstMs).toBeLessThan(350);
      expect(res.body.value.second).toEqual({ slow: 'slow' });
      expect(res.body.value.remaining).toBeGreaterThan(1500);
    });

    it('never extends the request budget with a larger call budget', async () => {
      const { http } = await one((f) => f.all({ hung: never }, { budgetMs: 5000 }), { budgetMs: 200 });
      const { value: res, ms } = await timed(http.get('/'));
      expect(res.body.error).toMatchObject({ name: 'BudgetExceededError', status: 504 });
      expect(ms).toBeGreaterThanOrEqual(190);
      expect(ms).toBeLessThan(450);
    });

    it('gives ctx.deadline and remainingMs() the tightest of the request budget, call budget and timeoutMs', async () => {
      const { http } = await one(
        async (f) => {
          const r = await f.all(
            {
              call: (ctx) => ctx.remainingMs(),
              own: { run: (ctx) => ctx.remainingMs(), timeoutMs: 100 },
            },
            { budgetMs: 400 },
          );
          return r;
        },
        { budgetMs: 3000 },
      );
      const res = await http.get('/').expect(200);
      expect(res.body.value.call).toBeGreaterThan(300);
      expect(res.body.value.call).toBeLessThanOrEqual(400);
      expect(res.body.value.own).toBeGreaterThan(0);
      expect(res.body.value.own).toBeLessThanOrEqual(100);
    });
  });

  describe('after', () => {
    it('starts a task once the tasks it names have resolved, with their values in ctx.results', async () => {
      const order: string[] = [];
      const { http } = await one((f) =>
        f.all({
          user: async () => {
            await sleep(50);
            order.push('user');
            return { id: 7 };
          },
          prefs: async () => {
            order.push('prefs');
            return 'dark';
          },
          orders: {
            run: ({ results }) => {
              order.push('orders');
              return `orders of ${(results.user as { id: number }).id} in ${String(results.prefs)}`;
            },
            after: ['user', 'prefs'],
          },
          summary: {
            run: ({ results }) => `summary: ${String(results.orders)}`,
            after: ['orders'],
          },
        }),
      );
      const res = await http.get('/').expect(200);
      expect(res.body.value).toEqual({
        user: { id: 7 },
        prefs: 'dark',
        orders: 'orders of 7 in dark',
        summary: 'summary: orders of 7 in dark',
      });
      expect(order.indexOf('orders')).toBeGreaterThan(order.indexOf('user'));
    });

    it('gives a dependent only the results it named', async () => {
      const { http } = await one((f) =>
        f.all({
          a: () => 'a',
          b: () => 'b',
          c: { run: ({ results }) => Object.keys(results).sort(), after: ['a'] },
        }),
      );
      expect((await http.get('/').expect(200)).body.value.c).toEqual(['a']);
    });

    it('hands a dependent the fallback of a dependency that failed with one', async () => {
      const { http } = await one((f) =>
        f.all({
          cfg: { run: () => Promise.reject(new Error('down')), fallback: { theme: 'default' } },
          page: { run: ({ results }) => (results.cfg as { theme: string }).theme, after: ['cfg'] },
        }),
      );
      expect((await http.get('/').expect(200)).body.value).toEqual({
        cfg: { theme: 'default' },
        page: 'default',
      });
    });

    it('rejects with the dependency failure and never runs the dependent', async () => {
      let ran = false;
      const { http } = await one((f) =>
        f.all({
          a: () => Promise.reject(new Error('a failed')),
          b: {
            run: () => {
              ran = true;
              return 'b';
            },
            after: ['a'],
          },
        }),
      );
      const res = await http.get('/').expect(200);
      expect(res.body.error).toMatchObject({ name: 'TaskFailedError', status: 502 });
      expect(res.body.error.tasks).toContain('a');
      expect(ran).toBe(false);
    });
  });

  describe('shedding', () => {
    it('rejects with OverloadedError (503, Retry-After) when the queue is full', async () => {
      const gate = deferred<string>();
      const { http, fo } = await serve({ concurrency: 1, maxQueue: 0 }, (app) => {
        app.get(
          '/hold',
          report((req) => req.fanout.all({ x: () => gate.promise })),
        );
        app.get(
          '/',
          report((req) => req.fanout.all({ y: () => 'y' })),
        );
      });
      const hold = http.get('/hold').then((r) => r);
      await waitFor(() => fo.stats().running === 1, 'the only slot to be taken');
      const { value: res, ms } = await timed(http.get('/'));
      expect(res.body.error).toMatchObject({
        name: 'OverloadedError',
        status: 503,
        expose: false,
        tasks: ['y'],
      });
      expect(res.body.error.headers['Retry-After']).toMatch(/^\d+$/);
      expect(ms).toBeLessThan(300);
      gate.resolve('x');
      expect((await hold).body.value).toEqual({ x: 'x' });
    });

    it('uses the fallback of a shed task and resolves', async () => {
      const gate = deferred<string>();
      const { http, fo } = await serve({ concurrency: 1, maxQueue: 0 }, (app) => {
        app.get(
          '/hold',
          report((req) => req.fanout.all({ x: () => gate.promise })),
        );
        app.get(
          '/',
          report((req) => req.fanout.all({ y: { run: () => 'y', fallback: 'shed-fb' } })),
        );
      });
      const hold = http.get('/hold').then((r) => r);
      await waitFor(() => fo.stats().running === 1, 'the only slot to be taken');
      expect((await http.get('/')).body).toEqual({ ok: true, value: { y: 'shed-fb' } });
      gate.resolve('x');
      await hold;
    });
  });

  it('runs a task ignoring its signal to completion in the background without changing the answer', async () => {
    let finished = false;
    const { http } = await one(
      (f) =>
        f.all({
          late: {
            run: async () => {
              await stubborn(300, 'x');
              finished = true;
              return 'late';
            },
            fallback: 'fb',
          },
        }),
      { budgetMs: 100, graceMs: 1000 },
    );
    const res = await http.get('/').expect(200);
    expect(res.body.value).toEqual({ late: 'fb' });
    await waitFor(() => finished, 'the stubborn task to finish');
  });
});
