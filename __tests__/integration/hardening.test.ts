// Regression tests for the hardening round (issue 7): each test is named after the bug it pins, and fails
// without its fix.
import net from 'node:net';
import { ClientClosedError, fanout, type TaskEvent, type Tasks } from 'express-fanout';
import { deferred, delay, never, sleep, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { openRequest, parseServerTiming, report, route, timed, useHarness } from './helpers/harness';

/** A value whose `then` getter throws: reading it, as `await` and `Promise.resolve` do, throws. */
function throwingThen(): object {
  return Object.defineProperty({}, 'then', {
    get() {
      throw new Error('hostile then');
    },
  });
}

function revokedProxy(): object {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
}

describe.each(expressVersions)('hardening (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  describe('a hostile value returned by a task', () => {
    it.each([
      ['a thenable whose `then` getter throws', throwingThen],
      ['a revoked Proxy', revokedProxy],
    ])('fails only that task with 502 when it returns %s, never the process', async (_what, make) => {
      const events: TaskEvent[] = [];
      const { http, fo } = await serve({ onTask: (e) => events.push(e) }, (app) =>
        app.get(
          '/',
          route(async (req, res) => {
            const values = await req.fanout.all({ ok: () => 1, hostile: () => make() });
            res.json(values);
          }),
        ),
      );
      const res = await http.get('/');
      expect(res.status).toBe(502);
      expect(events.map((e) => [e.name, e.status]).sort()).toEqual([
        ['hostile', 'rejected'],
        ['ok', 'fulfilled'],
      ]);
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0, failed: 1 });
    });

    it('reports a task that returns a revoked Proxy or rejects with one as rejected in settle()', async () => {
      const { http } = await serve({}, (app) =>
        app.get(
          '/',
          report(async (req) => {
            const r = await req.fanout.settle({
              returned: () => revokedProxy(),
              rejected: () => Promise.reject(revokedProxy()),
              thenable: { run: () => throwingThen(), fallback: 'fb' },
            });
            return { returned: r.returned.status, rejected: r.rejected.status, thenable: r.thenable.value };
          }),
        ),
      );
      const res = await http.get('/');
      expect(res.body).toEqual({
        ok: true,
        value: { returned: 'rejected', rejected: 'rejected', thenable: 'fb' },
      });
    });
  });

  describe('a task named `__proto__`', () => {
    it('is an own key of the results of all(), settle(), run() and ctx.results, never their prototype', async () => {
      const seen = deferred<unknown>();
      const { http } = await serve({}, (app) =>
        app.get(
          '/',
          report(async (req) => {
            const tasks = Object.fromEntries([
              ['__proto__', () => ({ isAdmin: true })],
              [
                'dependent',
                {
                  after: ['__proto__'],
                  run: ({ results }: { results: Record<string, unknown> }) => {
                    seen.resolve(Object.getOwnPropertyDescriptor(results, '__proto__')?.value);
                    return Object.getPrototypeOf(results) === Object.prototype;
                  },
                },
              ],
            ]) as Tasks;
            const all = (await req.fanout.all(tasks)) as Record<string, unknown>;
            const settled = (await req.fanout.settle(tasks)) as Record<string, unknown>;
            const one = await req.fanout.run(() => 'value', '__proto__');
            return {
              allOwn: Object.getOwnPropertyDescriptor(all, '__proto__')?.value,
              allPrototypeKept: Object.getPrototypeOf(all) === Object.prototype,
              inherited: (all as { isAdmin?: unknown }).isAdmin ?? null,
              dependent: all.dependent,
              settledKeys: Object.keys(settled),
              settledOwn: Object.getOwnPropertyDescriptor(settled, '__proto__')?.value,
              run: one,
            };
          }),
        ),
      );
      const res = await http.get('/');
      expect(res.body).toEqual({
        ok: true,
        value: {
          allOwn: { isAdmin: true },
          allPrototypeKept: true,
          inherited: null,
          dependent: true,
          settledKeys: ['__proto__', 'dependent'],
          settledOwn: { status: 'fulfilled', value: { isAdmin: true }, ms: expect.any(Number) },
          run: 'value',
        },
      });
      expect(await seen.promise).toEqual({ isAdmin: true });
    });
  });

  describe('the Server-Timing header', () => {
    it('stays under 4 KB with 20 tasks of 1 KB names, so Node’s own client can read the response', async () => {
      const { http } = await serve({ serverTiming: true }, (app) =>
        app.get(
          '/',
          route(async (req, res) => {
            const tasks: Tasks = {};
            for (let i = 0; i < 20; i++) tasks[`${String(i).padStart(2, '0')}${'x'.repeat(1022)}`] = () => i;
            await req.fanout.all(tasks);
            res.json({ ok: true });
          }),
        ),
      );
      const res = await http.get('/').expect(200);
      const header = String(res.headers['server-timing']);
      expect(Buffer.byteLength(header)).toBeLessThanOrEqual(4096);
      const entries = parseServerTiming(header);
      expect(entries.at(-1)?.name).toBe('total');
      // Long names are cut, so all twenty fit.
      const tasks = entries.filter((e) => e.name !== 'total');
      expect(tasks).toHaveLength(20);
      for (const [i, entry] of tasks.entries()) {
        expect(entry.name).toBe(`${String(i).padStart(2, '0')}${'x'.repeat(46)}`);
      }
    });

    it('keeps the app’s own Server-Timing entries first and the whole header within 4 KB', async () => {
      const { http } = await serve({ serverTiming: true }, (app) =>
        app.get(
          '/',
          route(async (req, res) => {
            res.setHeader('Server-Timing', 'app;dur=1');
            const tasks: Tasks = {};
            for (let i = 0; i < 200; i++) tasks[`task-${i}-${'y'.repeat(40)}`] = () => i;
            await req.fanout.all(tasks);
            res.json({ ok: true });
          }),
        ),
      );
      const res = await http.get('/').expect(200);
      const header = String(res.headers['server-timing']);
      expect(header.startsWith('app;dur=1, ')).toBe(true);
      expect(Buffer.byteLength(header)).toBeLessThanOrEqual(4096);
    });
  });

  describe('a closed socket', () => {
    it('cancels every request pipelined on it, not only the one being answered', async () => {
      const events: TaskEvent[] = [];
      const started: string[] = [];
      const { server, fo } = await serve({ budgetMs: 10000, onTask: (e) => events.push(e) }, (app) =>
        app.get(
          '/:id',
          route(async (req, res) => {
            started.push(String(req.params.id));
            await req.fanout.all({ wait: ({ signal }) => delay(3000, 'x', signal) });
            res.json({ ok: true });
          }),
        ),
      );
      const { port } = server.address() as net.AddressInfo;
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.write('GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n');
      // Node hands both to Express at once; the second one's response waits behind the first's.
      await waitFor(() => started.length === 2 && fo.stats().running === 2, 'both requests to start');
      const closedAt = Date.now();
      socket.destroy();
      await waitFor(() => fo.stats().running === 0, 'every task of the socket to end', 1000);
      expect(Date.now() - closedAt).toBeLessThan(1000);
      // The pipelined request, if Node handed it to Express, ends at once too: nothing keeps a slot.
      await sleep(50);
      expect(events.every((e) => e.status === 'aborted')).toBe(true);
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0, completed: 0 });
    });
  });

  describe('a call that could never be admitted', () => {
    it('is a 500 without Retry-After, with a message under 1 KB that gives the sizes', async () => {
      const { http, errors } = await serve({ perRequest: 2, maxQueue: 3 }, (app) =>
        app.get(
          '/',
          route(async (req, res) => {
            const tasks: Tasks = {};
            for (let i = 0; i < 10000; i++) tasks[`t${i}`] = () => i;
            res.json(await req.fanout.all(tasks));
          }),
        ),
      );
      const res = await http.get('/');
      expect(res.status).toBe(500);
      expect(res.headers['retry-after']).toBeUndefined();
      const error = errors[0] as Error & { name: string; status: number; tasks: string[] };
      expect(error.name).toBe('CallTooLargeError');
      expect(error.tasks).toHaveLength(10000);
      expect(Buffer.byteLength(error.message)).toBeLessThan(1024);
      expect(error.message).toContain('10000 required tasks');
      expect(error.message).toContain('perRequest 2 + maxQueue 3');
      expect(error.message).toContain('and 9997 more');
    });

    it('still sheds with 503 a call that fits the limits but not the room left now', async () => {
      const hold = deferred<void>();
      const { http, fo } = await serve({ concurrency: 1, perRequest: 2, maxQueue: 2 }, (app) => {
        app.get(
          '/hold',
          route(async (req, res) => {
            await req.fanout.all({ a: () => hold.promise, b: () => hold.promise, c: () => hold.promise });
            res.json({ ok: true });
          }),
        );
        app.get(
          '/',
          route(async (req, res) => {
            res.json(await req.fanout.all({ x: () => 1, y: () => 2 }));
          }),
        );
      });
      const holding = http.get('/hold').then((r) => r.status);
      await waitFor(() => fo.stats().queued === 2, 'the queue to fill');
      const res = await http.get('/');
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('1');
      hold.resolve();
      expect(await holding).toBe(200);
    });
  });

  describe('error messages', () => {
    it('name a few tasks and count the rest, under 1 KB, whatever the names', async () => {
      const { http, errors } = await serve({ budgetMs: 50, graceMs: 0 }, (app) =>
        app.get(
          '/',
          route(async (req, res) => {
            const tasks: Tasks = {};
            for (let i = 0; i < 12; i++) tasks[`${i}-${'n'.repeat(10000)}`] = () => never();
            res.json(await req.fanout.all(tasks));
          }),
        ),
      );
      const res = await http.get('/');
      expect(res.status).toBe(504);
      const error = errors[0] as Error;
      expect(Buffer.byteLength(error.message)).toBeLessThan(1024);
      expect(error.message).toMatch(/and \d+ more did not finish within the 50 ms budget$/);
    });
  });

  describe('mounting', () => {
    it('keeps the budget when the same middleware is mounted twice (app and router)', async () => {
      const fo = fanout({ budgetMs: 300 });
      const { http } = await serve(
        undefined,
        (app) => {
          const router = express.Router();
          router.use(fo);
          router.get(
            '/',
            route(async (req, res) => {
              res.json(await req.fanout.all({ slow: ({ signal }) => delay(200, 'x', signal) }));
            }),
          );
          app.use(async (_req, _res, next) => {
            await sleep(150); // an authentication lookup, between the two mounts
            next();
          });
          app.use(router);
        },
        { mount: (app) => app.use(fo) },
      );
      const { value: res, ms } = await timed(http.get('/'));
      expect(res.status).toBe(504);
      expect(ms).toBeGreaterThanOrEqual(280);
      expect(ms).toBeLessThan(440);
      await fo.close();
    });

    it('gives a second, different instance its own bounds but never a later deadline than the first', async () => {
      const inner = fanout({ budgetMs: 5000, perRequest: 1 });
      const { http } = await serve({ budgetMs: 200 }, (app) => {
        const router = express.Router();
        router.use(inner);
        router.get(
          '/',
          report(async (req) => {
            const remaining = req.fanout.remainingMs();
            await req.fanout.all({ slow: ({ signal }) => delay(1000, 'x', signal) });
            return remaining;
          }),
        );
        app.use(router);
      });
      const { value: res, ms } = await timed(http.get('/'));
      expect(res.body.ok).toBe(false);
      expect(res.body.error).toMatchObject({ name: 'BudgetExceededError', budgetMs: 200 });
      expect(ms).toBeLessThan(600);
      expect(inner.stats().timedOut).toBe(1);
      await inner.close();
    });

    it('keeps the inner instance as req.fanout when res.locals is replaced below both', async () => {
      const inner = fanout({ budgetMs: 5000 });
      const { http, fo } = await serve({ budgetMs: 2000 }, (app) => {
        const router = express.Router();
        router.use(inner);
        router.use((_req, res, next) => {
          res.locals = {};
          next();
        });
        router.get(
          '/',
          report(async (req) => req.fanout.all({ a: async () => 1, b: async () => 2 })),
        );
        app.use(router);
      });
      const res = await http.get('/').expect(200);
      expect(res.body).toMatchObject({ ok: true, value: { a: 1, b: 2 } });
      expect(inner.stats().completed).toBe(2);
      expect(fo.stats().completed).toBe(0);
      await inner.close();
    });

    it('answers at once with 504 when the handler first uses req.fanout after the budget is spent', async () => {
      const { http } = await serve({ budgetMs: 100 }, (app) =>
        app.get(
          '/',
          route(async (req, res) => {
            await sleep(200); // a slow body parser mounted after fanout()
            const started = performance.now();
            await req.fanout.all({ a: () => delay(1000, 'x') }).catch((error: unknown) => {
              res.setHeader('x-ms', String(Math.round(performance.now() - started)));
              throw error;
            });
          }),
        ),
      );
      const res = await http.get('/');
      expect(res.status).toBe(504);
      expect(Number(res.headers['x-ms'])).toBeLessThan(50);
    });

    it('explains what to mount when req.fanout is used on a route no fanout() saw', async () => {
      const { http, errors } = await serve(
        {},
        (app) => {
          app.get(
            '/',
            route(async (req, res) => {
              res.json(await req.fanout.all({ a: () => 1 }));
            }),
          );
        },
        { mount: () => undefined },
      );
      const res = await http.get('/');
      expect(res.status).toBe(500);
      expect(String((errors[0] as Error).message)).toContain('mount `app.use(fanout())`');
    });
  });

  describe('a client that leaves', () => {
    it('gets a body-safe ClientClosedError message', async () => {
      expect(new ClientClosedError(['a']).message).toBe(
        'Client Closed Request: Task `a` aborted, the client closed the connection',
      );
    });

    it('makes all() reject with ClientClosedError even when fallbacks cover every task', async () => {
      const outcome = deferred<unknown>();
      const started = deferred<void>();
      const { url } = await serve({}, (app) =>
        app.get('/', (req) => {
          req.fanout
            .all({
              a: {
                run: ({ signal }) => {
                  started.resolve();
                  return delay(3000, 'x', signal);
                },
                fallback: 'fb',
              },
            })
            .then(outcome.resolve, outcome.resolve);
        }),
      );
      const client = openRequest(url, '/');
      await started.promise;
      client.abort();
      expect(await outcome.promise).toMatchObject({ name: 'ClientClosedError', status: 499, tasks: ['a'] });
    });
  });

  describe('deadline', () => {
    it('is epoch ms in the caller’s clock, even after the wall clock moved', async () => {
      const { http } = await serve({ budgetMs: 1000 }, (app) =>
        app.get(
          '/',
          report(async (req) => {
            const spy = jest.spyOn(Date, 'now').mockImplementation(() => 1_000_000_000_000);
            try {
              const deadline = req.fanout.deadline;
              const { a } = await req.fanout.all({ a: (ctx) => ctx.deadline - 1_000_000_000_000 });
              return { request: deadline - 1_000_000_000_000, task: a, remaining: req.fanout.remainingMs() };
            } finally {
              spy.mockRestore();
            }
          }),
        ),
      );
      const res = await http.get('/');
      const { request = NaN, task = NaN, remaining = NaN } = res.body.value as Record<string, number>;
      expect(request).toBeGreaterThan(800);
      expect(request).toBeLessThanOrEqual(1000);
      expect(task).toBeLessThanOrEqual(request + 1);
      expect(Math.abs(request - remaining)).toBeLessThan(100);
    });
  });
});

describe.each(expressVersions)('asynchronous fallbacks (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('awaits a fallback that returns a promise and reports its own time', async () => {
    const events: TaskEvent[] = [];
    const { http } = await serve({ onTask: (e) => events.push(e), serverTiming: true }, (app) =>
      app.get(
        '/',
        route(async (req, res) => {
          res.json(
            await req.fanout.all({
              reco: {
                run: () => Promise.reject(new Error('down')),
                fallback: () => delay(30, ['cached']),
              },
            }),
          );
        }),
      ),
    );
    const res = await http.get('/').expect(200);
    expect(res.body).toEqual({ reco: ['cached'] });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ name: 'reco', status: 'rejected', fallback: true });
    expect(events[0]!.fallbackMs).toBeGreaterThanOrEqual(20);
    const entry = parseServerTiming(res.headers['server-timing']).find((e) => e.name === 'reco');
    expect(entry?.desc).toMatch(/^fallback \d+(\.\d)? ms$/);
  });

  it('gives a fallback used at the deadline `fallbackMs` more, and the response leaves by budget + fallbackMs', async () => {
    const { http } = await serve({ budgetMs: 100, fallbackMs: 50, graceMs: 0 }, (app) =>
      app.get(
        '/',
        route(async (req, res) => {
          res.json(
            await req.fanout.all({
              fast: () => 1,
              slow: { run: () => never(), fallback: () => delay(20, 'stale') },
              hung: { run: () => never(), fallback: () => never() },
              opt: { run: () => never(), fallback: 'x' },
            }),
          );
        }),
      ),
    );
    const { value: res, ms } = await timed(http.get('/'));
    // `hung`'s fallback never settles: the task fails when its 50 ms are up, and the call with it.
    expect(res.status).toBe(502);
    expect(ms).toBeGreaterThanOrEqual(140);
    expect(ms).toBeLessThan(400);
  });

  it('resolves with the values of fallbacks awaited at the deadline', async () => {
    const { http } = await serve({ budgetMs: 100, fallbackMs: 50, graceMs: 0 }, (app) =>
      app.get(
        '/',
        route(async (req, res) => {
          res.json(
            await req.fanout.settle({
              slow: { run: () => never(), fallback: () => delay(20, 'stale') },
              opt: { run: () => never(), fallback: 'x' },
            }),
          );
        }),
      ),
    );
    const { value: res, ms } = await timed(http.get('/'));
    expect(res.body).toMatchObject({
      slow: { status: 'timeout', value: 'stale' },
      opt: { status: 'timeout', value: 'x' },
    });
    expect(ms).toBeLessThan(300);
  });

  it('fails the task as without a fallback when the fallback rejects', async () => {
    const { http, errors } = await serve({}, (app) =>
      app.get(
        '/',
        route(async (req, res) => {
          res.json(
            await req.fanout.all({
              a: {
                run: () => Promise.reject(new Error('down')),
                fallback: () => Promise.reject(new Error('cache down')),
              },
            }),
          );
        }),
      ),
    );
    await http.get('/').expect(502);
    expect(errors[0]).toMatchObject({
      name: 'TaskFailedError',
      message: 'Task `a` failed and its fallback rejected',
    });
    expect((errors[0] as Error).cause).toMatchObject({ message: 'cache down' });
  });

  it('starts a dependent with the value of its dependency’s asynchronous fallback', async () => {
    const { http } = await serve({}, (app) =>
      app.get(
        '/',
        report(async (req) =>
          req.fanout.all({
            user: { run: () => Promise.reject(new Error('x')), fallback: () => delay(10, { id: 7 }) },
            orders: {
              after: ['user'],
              run: ({ results }) => `orders of ${(results.user as { id: number }).id}`,
            },
          }),
        ),
      ),
    );
    const res = await http.get('/');
    expect(res.body).toEqual({ ok: true, value: { user: { id: 7 }, orders: 'orders of 7' } });
  });

  it.each([
    [
      'throws null',
      () => {
        throw null;
      },
    ],
    ['rejects with undefined', () => Promise.reject(undefined)],
  ])(
    'fails the call with 502 when the fallback of a shed task %s, without throwing or an unhandled rejection',
    async (_what, fallback) => {
      const hold = deferred<void>();
      const { http, errors } = await serve({ concurrency: 1, maxQueue: 0 }, (app) =>
        app.get(
          '/',
          route(async (req, res) => {
            res.json(
              await req.fanout.all({
                a: () => hold.promise.then(() => 1),
                b: { run: () => 2, fallback },
              }),
            );
          }),
        ),
      );
      const res = http.get('/').then((r) => r);
      await sleep(50);
      hold.resolve();
      expect((await res).status).toBe(502);
      expect(errors[0]).toMatchObject({ name: 'TaskFailedError', tasks: ['b'] });
    },
  );

  it('reports `fallback: true` to onTask for a synchronous fallback', async () => {
    const events: TaskEvent[] = [];
    const { http } = await serve({ onTask: (e) => events.push(e) }, (app) =>
      app.get(
        '/',
        report(async (req) =>
          req.fanout.all({ a: { run: () => Promise.reject(new Error('x')), fallback: 1 } }),
        ),
      ),
    );
    await http.get('/').expect(200);
    expect(events).toEqual([expect.objectContaining({ name: 'a', status: 'rejected', fallback: true })]);
  });
});
