import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { types } from 'node:util';
import type { Express, NextFunction, Request, Response } from 'express';
import { OverloadedError, type FanoutOptions, type WorkerOptions } from 'express-fanout';
import { sleep, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { describeError, openRequest, route, timed, useHarness, type ErrorReport } from './helpers/harness';
import { trackTimers } from './helpers/leaks';

const METHODS = join(__dirname, '..', 'fixtures', 'worker-methods.js');
const FIXTURES = dirname(METHODS);
const BUDGET_HEADER = 'x-request-budget-ms';

/** Worker threads alive in this process: each shows as a `MessagePort` (a `Worker` on some Node versions). */
const threadHandles = (): number =>
  process.getActiveResourcesInfo().filter((r) => r === 'Worker' || r === 'MessagePort').length;

/** `fanout()` options with a worker pool on the fixture script; a long budget unless the test says otherwise. */
function withPool(workers: Omit<WorkerOptions, 'script'>, options: FanoutOptions = {}): FanoutOptions {
  return { budgetMs: 3000, ...options, workers: { script: METHODS, ...workers } };
}

/** The query string of `/worker/:method`: its arguments as JSON. */
const args = (...values: unknown[]) => ({ args: JSON.stringify(values) });

/** `GET /worker/:method?args=[...]` answers `{ value: await req.fanout.worker(method, args) }`; errors go to next(). */
function workerRoute(app: Express): void {
  app.get(
    '/worker/:method',
    route(async (req, res) => {
      const parsed = JSON.parse(String(req.query.args ?? '[]')) as unknown[];
      res.json({ value: await req.fanout.worker(String(req.params.method), parsed) });
    }),
  );
}

/** An app error handler that answers with the error's status and headers, and describes it as JSON. */
function echoErrors(app: Express): void {
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = error as { status?: number; headers?: Record<string, string> };
    if (e.headers) res.set(e.headers);
    res.status(e.status ?? 500).json({ error: describeError(error) });
  });
}

const errorOf = (body: unknown): ErrorReport => (body as { error: ErrorReport }).error;

let tmp: string;
let baselineThreads = 0;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'fanout-workers-http-'));
  baselineThreads = threadHandles();
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** A fresh, empty file for `mark` calls to append to. */
function markFile(name: string): string {
  const file = join(tmp, `${name}-${Math.random().toString(36).slice(2)}.log`);
  writeFileSync(file, '');
  return file;
}

const marks = (file: string): string => readFileSync(file, 'utf8');

describe.each(expressVersions)('worker threads (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  // Runs after the harness has closed every middleware and server of the test: no thread may remain.
  afterEach(async () => {
    await waitFor(() => threadHandles() <= baselineThreads, 'every worker thread to exit', 2000).catch(
      () => undefined,
    );
    expect(threadHandles()).toBe(baselineThreads);
  });

  it("returns a method's result through req.fanout.worker() and through ctx.worker() inside all()", async () => {
    const { http, fo } = await serve(withPool({ maxWorkers: 2 }), (app) => {
      workerRoute(app);
      app.get(
        '/all',
        route(async (req, res) => {
          const { sum, echoed, local } = await req.fanout.all({
            sum: (ctx) => ctx.worker('add', [40, 2]),
            echoed: (ctx) =>
              ctx.worker('echo', [{ when: new Date(0), tags: new Set(['a', 'b']), n: [1, null] }]),
            local: () => 'main thread',
          });
          const e = echoed as { when: unknown; tags: unknown; n: unknown };
          // Structured clone rebuilds them in Node's own realm, not jest's: `instanceof` would say no.
          res.json({
            sum,
            sumType: typeof sum,
            when: types.isDate(e.when) ? e.when.toISOString() : `not a Date: ${String(e.when)}`,
            tags: types.isSet(e.tags) ? [...e.tags] : `not a Set: ${String(e.tags)}`,
            n: e.n,
            local,
          });
        }),
      );
    });

    const one = await http.get('/worker/add').query(args(2, 3)).expect(200);
    expect(one.body).toEqual({ value: 5 });
    expect(one.headers['server-timing']).toMatch(/(^|, )add;dur=/);

    const all = await http.get('/all').expect(200);
    expect(all.body).toEqual({
      sum: 42,
      sumType: 'number',
      when: '1970-01-01T00:00:00.000Z',
      tags: ['a', 'b'],
      n: [1, null],
      local: 'main thread',
    });
    expect(fo.stats()).toMatchObject({
      completed: 4,
      failed: 0,
      workers: { busy: 0, pending: 0, shed: 0, terminated: 0, crashed: 0 },
    });
    // req.fanout.worker() takes no IO slot, so its task has no bulkhead of its own; the IO tasks do.
    const dependencies = Object.keys(fo.stats().dependencies);
    expect(dependencies).not.toContain('add');
    expect(dependencies).toEqual(expect.arrayContaining(['sum', 'echoed', 'local']));
  });

  it('cuts a runaway loop at the budget with a 504, terminates its thread and keeps serving at full size', async () => {
    const { http, fo } = await serve(withPool({ maxWorkers: 2 }), (app) => {
      workerRoute(app);
      echoErrors(app);
    });
    const { value: cut, ms } = await timed(http.get('/worker/spin').set(BUDGET_HEADER, '300'));
    expect(cut.status).toBe(504);
    expect(errorOf(cut.body)).toMatchObject({
      name: 'BudgetExceededError',
      message: 'Task `spin` did not finish within the 300 ms budget',
      tasks: ['spin'],
      budgetMs: 300,
    });
    expect(ms).toBeGreaterThanOrEqual(280);
    expect(ms).toBeLessThan(300 + 400);
    expect(fo.stats()).toMatchObject({ timedOut: 1, workers: { crashed: 0 } });
    // Its thread is terminated once the call's short grace (50 ms) is over.
    await waitFor(() => fo.stats().workers.terminated === 1, 'the spinning thread to be terminated');

    // The very next request is served...
    await http.get('/worker/add').query(args(1, 2)).expect(200, { value: 3 });
    // ...and once the spinning thread is gone, two calls run at once on two distinct threads.
    await waitFor(() => fo.stats().workers.busy === 0, 'the spinning thread to be replaced');
    const [a, b] = await Promise.all([
      http.get('/worker/sleepThenThreadId').query(args(200)),
      http.get('/worker/sleepThenThreadId').query(args(200)),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(typeof a.body.value).toBe('number');
    expect(a.body.value).not.toBe(b.body.value);
    expect(fo.stats().workers).toEqual({ busy: 0, idle: 2, pending: 0, shed: 0, terminated: 1, crashed: 0 });
  });

  it('fails only the task whose thread exits (502 WorkerCrashedError); a concurrent request on another thread succeeds', async () => {
    const { http, fo } = await serve(withPool({ maxWorkers: 2 }), (app) => {
      workerRoute(app);
      echoErrors(app);
    });
    const sibling = http
      .get('/worker/sleepThenThreadId')
      .query(args(500))
      .then((r) => r);
    await waitFor(() => fo.stats().workers.busy === 1, 'the sibling to occupy a thread');
    const crashed = await http.get('/worker/exit').query(args(7));
    expect(crashed.status).toBe(502);
    expect(errorOf(crashed.body)).toMatchObject({
      name: 'WorkerCrashedError',
      message: 'Task `exit` failed: its worker thread crashed and was replaced',
      tasks: ['exit'],
      cause: { message: 'the worker thread exited with code 7' },
    });
    const survivor = await sibling;
    expect(survivor.status).toBe(200);
    expect(typeof survivor.body.value).toBe('number');
    expect(fo.stats().workers).toMatchObject({ crashed: 1, terminated: 0 });

    await http.get('/worker/add').query(args(2, 2)).expect(200, { value: 4 });
    expect(fo.stats()).toMatchObject({ failed: 1, workers: { busy: 0, pending: 0, crashed: 1 } });
  });

  it("gives the worker's message in the error, never the script's path in the response body", async () => {
    const echo = await serve(withPool({ maxWorkers: 1 }), (app) => {
      workerRoute(app);
      app.get(
        '/all',
        route(async (req, res) => {
          res.json(await req.fanout.all({ load: (ctx) => ctx.worker('failWithPath') }));
        }),
      );
      echoErrors(app);
    });
    const direct = await echo.http.get('/worker/failWithPath');
    expect(direct.status).toBe(502);
    expect(errorOf(direct.body)).toMatchObject({
      name: 'TaskFailedError',
      message: 'Task `failWithPath` failed',
      tasks: ['failWithPath'],
      cause: { name: 'Error', message: 'cannot read worker-methods.js next to data.db' },
    });
    const inAll = await echo.http.get('/all');
    expect(inAll.status).toBe(502);
    expect(errorOf(inAll.body)).toMatchObject({
      message: 'Task `load` failed',
      cause: { message: 'cannot read worker-methods.js next to data.db' },
    });
    for (const res of [direct, inAll]) {
      expect(res.text).not.toContain(FIXTURES);
      expect(res.text).not.toContain(pathToFileURL(FIXTURES).href);
    }

    // Express's own error handler in production: the status, and nothing of the error at all (it logs the
    // error on the server, with console.error, which is where the path belongs).
    const prod = await serve(withPool({ maxWorkers: 1 }), workerRoute, { env: 'production' });
    const log = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    let hidden: Awaited<ReturnType<typeof prod.http.get>>;
    let logged: unknown[][];
    try {
      hidden = await prod.http.get('/worker/failWithPath');
      await waitFor(() => log.mock.calls.length > 0, 'the error handler to log the error');
      logged = [...log.mock.calls];
    } finally {
      log.mockRestore();
    }
    expect(logged).toHaveLength(1);
    expect(String(logged[0]?.[0])).toContain('TaskFailedError: Task `failWithPath` failed');
    expect(hidden.status).toBe(502);
    expect(hidden.text).not.toContain(FIXTURES);
    expect(hidden.text).not.toContain('cannot read');
    expect(hidden.text).not.toContain('failWithPath');
    expect(prod.errors).toHaveLength(1);
    const seen = prod.errors[0] as Error & { cause?: Error };
    expect(seen.cause?.message).toBe('cannot read worker-methods.js next to data.db');
    expect(String(seen.cause?.stack).split('\n')[0]).toBe(
      'Error: cannot read worker-methods.js next to data.db',
    );
  });

  it('sheds a worker call at once when the worker queue is full, never throwing synchronously or hanging', async () => {
    const { http, fo, errors } = await serve(withPool({ maxWorkers: 1, maxQueueSize: 1 }), workerRoute);
    const started = performance.now();
    const responses = await Promise.all(
      [1, 2, 3].map(() =>
        http
          .get('/worker/sleep')
          .query(args(400))
          .then((res) => ({ res, ms: performance.now() - started })),
      ),
    );
    const ok = responses.filter(({ res }) => res.status === 200);
    const refused = responses.filter(({ res }) => res.status !== 200);
    expect(ok.map(({ res }) => res.body)).toEqual([{ value: 400 }, { value: 400 }]);
    expect(refused).toHaveLength(1);
    const [shed] = refused;
    expect(shed!.res.status).toBe(503);
    expect(shed!.ms).toBeLessThan(400); // at once, not after a thread freed up
    // One error reached Express, by next(): the route's promise rejected (a synchronous throw would be a 500
    // from Express 5's router, or a crash on Express 4). It is the pool's OverloadedError itself.
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(OverloadedError);
    expect((errors[0] as OverloadedError).message).toBe(
      'Task `sleep` shed: the worker queue is full (1/1 threads busy, 1/1 queued)',
    );
    expect(fo.stats()).toMatchObject({ shed: 1, failed: 0 });
    expect(fo.stats().workers).toMatchObject({ busy: 0, pending: 0, shed: 1, terminated: 0, crashed: 0 });
  });

  it('answers a call shed by the full worker queue with 503 and Retry-After, as the SPEC says', async () => {
    const { http, errors } = await serve(withPool({ maxWorkers: 1, maxQueueSize: 1 }), workerRoute);
    const responses = await Promise.all([1, 2, 3].map(() => http.get('/worker/sleep').query(args(300))));
    expect(responses.map((r) => r.status).sort()).toEqual([200, 200, 503]);
    expect(errors.map((e) => describeError(e).name)).toEqual(['OverloadedError']);
    const shed = responses.find((r) => r.status === 503)!;
    expect(shed.headers['retry-after']).toBe('1');
  });

  it('counts time queued for a thread against the budget: 504 at the budget, and the task never starts', async () => {
    const file = markFile('queued');
    const { http, fo } = await serve(withPool({ maxWorkers: 1 }), (app) => {
      workerRoute(app);
      echoErrors(app);
    });
    const first = http
      .get('/worker/blockThenMark')
      .query(args(900, file, 'first'))
      .then((r) => r);
    await waitFor(() => fo.stats().workers.busy === 1, 'the first call to take the thread');
    const { value: late, ms } = await timed(
      http.get('/worker/mark').query(args(file, 'second')).set(BUDGET_HEADER, '300'),
    );
    expect(late.status).toBe(504);
    expect(errorOf(late.body)).toMatchObject({ name: 'BudgetExceededError', tasks: ['mark'], budgetMs: 300 });
    expect(ms).toBeGreaterThanOrEqual(280);
    expect(ms).toBeLessThan(300 + 400);
    // Dropped from the queue at its deadline: nothing waits, and no thread was terminated for it.
    expect(fo.stats().workers).toMatchObject({ pending: 0, terminated: 0 });

    expect((await first).body).toEqual({ value: 'first' });
    await sleep(150);
    expect(marks(file)).toBe('first\n');
  });

  it('drops a queued worker task when the client disconnects: it never runs', async () => {
    const file = markFile('disconnect-queued');
    const { http, url, fo } = await serve(withPool({ maxWorkers: 1 }), workerRoute);
    const first = http
      .get('/worker/blockThenMark')
      .query(args(600, file, 'first'))
      .then((r) => r);
    await waitFor(() => fo.stats().workers.busy === 1, 'the first call to take the thread');
    const client = openRequest(
      url,
      `/worker/mark?args=${encodeURIComponent(JSON.stringify([file, 'gone']))}`,
    );
    await waitFor(() => fo.stats().workers.pending === 1, 'the second call to queue');
    client.abort();
    await waitFor(() => fo.stats().workers.pending === 0, 'the queued call to be dropped');
    expect(await client.response).toBeUndefined();

    expect((await first).status).toBe(200);
    await sleep(150);
    expect(marks(file)).toBe('first\n');
    expect(fo.stats()).toMatchObject({ aborted: 1, workers: { terminated: 0, crashed: 0 } });
  });

  it('terminates the thread of a running worker task when the client disconnects', async () => {
    const file = markFile('disconnect-running');
    const { http, url, fo } = await serve(withPool({ maxWorkers: 1 }), workerRoute);
    await http.get('/worker/add').query(args(1, 1)).expect(200); // the thread is up: the next call runs at once
    const client = openRequest(
      url,
      `/worker/blockBetweenMarks?args=${encodeURIComponent(JSON.stringify([800, file, 'cut']))}`,
    );
    await waitFor(() => marks(file) === 'cut:start\n', 'the call to start on its thread');
    const abortedAt = performance.now();
    client.abort();
    await waitFor(() => fo.stats().workers.terminated === 1, 'the thread to be terminated');
    expect(performance.now() - abortedAt).toBeLessThan(400);

    // The next call gets a fresh thread at once, and the cut call never reaches its end.
    await http.get('/worker/add').query(args(2, 3)).expect(200, { value: 5 });
    await sleep(Math.max(0, 800 + 250 - (performance.now() - abortedAt)));
    expect(marks(file)).toBe('cut:start\n');
    expect(fo.stats()).toMatchObject({ aborted: 1, workers: { busy: 0, terminated: 1, crashed: 0 } });
  });

  it('close() lets a task admitted before it use the pool for the first time', async () => {
    const { http, fo } = await serve(withPool({ maxWorkers: 1 }), (app) =>
      app.get(
        '/',
        route(async (req, res) => {
          res.json(
            await req.fanout.all({ sum: async ({ worker }) => (await sleep(150), worker('add', [2, 3])) }),
          );
        }),
      ),
    );
    const answer = http.get('/').then((r) => r);
    await waitFor(() => fo.stats().running === 1, 'the task to start');
    await fo.close();
    const res = await answer;
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ sum: 5 });
    expect(threadHandles()).toBe(baselineThreads);
  });

  it('close() drains the queued worker tasks, sheds new ones with 503, then leaves no thread behind', async () => {
    const file = markFile('close');
    const { http, fo } = await serve(withPool({ maxWorkers: 1 }), (app) => {
      workerRoute(app);
      echoErrors(app);
    });
    const running = http
      .get('/worker/sleep')
      .query(args(300))
      .then((r) => r);
    await waitFor(() => fo.stats().workers.busy === 1, 'the first call to take the thread');
    const queued = ['q1', 'q2'].map((label) =>
      http
        .get('/worker/mark')
        .query(args(file, label))
        .then((r) => r),
    );
    await waitFor(() => fo.stats().workers.pending === 2, 'two calls to queue');

    const closing = fo.close();
    const refused = await http.get('/worker/add').query(args(1, 1));
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('5');
    expect(errorOf(refused.body)).toMatchObject({
      name: 'OverloadedError',
      message: 'Task `add` shed: the middleware is closing',
      tasks: ['add'],
    });

    // "Stop admitting, let what runs settle (bounded by budgets and graceMs), then end the worker threads."
    await closing;
    expect((await running).body).toEqual({ value: 300 });
    for (const res of await Promise.all(queued)) expect(res.status).toBe(200);
    expect(marks(file)).toBe('q1\nq2\n');
    expect(fo.stats().workers).toMatchObject({ busy: 0, idle: 0, pending: 0 });
    expect(threadHandles()).toBe(baselineThreads);

    const after = await http.get('/worker/add').query(args(1, 1));
    expect(after.status).toBe(503);
  });

  it('close() ends a runaway worker at its budget and leaves no thread behind', async () => {
    const { http, fo } = await serve(withPool({ maxWorkers: 2 }), (app) => {
      workerRoute(app);
      echoErrors(app);
    });
    const spinning = http
      .get('/worker/spin')
      .set(BUDGET_HEADER, '500')
      .then((r) => r);
    await waitFor(() => fo.stats().workers.busy === 1, 'the loop to take a thread');
    const { ms } = await timed(fo.close());
    expect(ms).toBeLessThan(500 + 600);
    expect((await spinning).status).toBe(504);
    expect(fo.stats().workers).toMatchObject({ busy: 0, idle: 0, pending: 0, terminated: 1 });
    expect(threadHandles()).toBe(baselineThreads);
  });

  it('leaves no unhandled rejection, timer or thread behind after runaway, crash, throw, shed and disconnect', async () => {
    const timers = trackTimers();
    try {
      const file = markFile('leaks');
      const { http, url, fo, server } = await serve(
        withPool({ maxWorkers: 1, maxQueueSize: 1 }),
        workerRoute,
      );
      expect((await http.get('/worker/spin').set(BUDGET_HEADER, '200')).status).toBe(504);
      expect((await http.get('/worker/exit').query(args(1))).status).toBe(502);
      expect((await http.get('/worker/failWithPath')).status).toBe(502);
      expect((await http.get('/worker/rejectLater').query(args('no'))).status).toBe(502);
      const shed = await Promise.all([1, 2, 3].map(() => http.get('/worker/sleep').query(args(100))));
      expect(shed.filter((r) => r.status === 200)).toHaveLength(2);
      const client = openRequest(
        url,
        `/worker/blockBetweenMarks?args=${encodeURIComponent(JSON.stringify([2000, file, 'x']))}`,
      );
      await waitFor(() => marks(file) === 'x:start\n', 'the call to start');
      client.abort();
      await waitFor(() => fo.stats().workers.terminated === 2, 'the thread to be terminated');

      await fo.close();
      server.closeAllConnections();
      await sleep(300); // workerpool's termination grace timers run out
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0, workers: { busy: 0, idle: 0, pending: 0 } });
      expect(timers.pending()).toBe(0);
      expect(threadHandles()).toBe(baselineThreads);
    } finally {
      timers.restore();
    }
    // The harness's afterEach checks for unhandled rejections, uncaught errors and listener-leak warnings.
  });

  it('rejects arguments that cannot be cloned before queueing, naming the task, without starting a thread', async () => {
    const { http, fo } = await serve(withPool({ maxWorkers: 1 }), (app) => {
      app.get(
        '/direct',
        route(async (req, res) => {
          res.json(await req.fanout.worker('echo', [{ onDone: () => 1 }]));
        }),
      );
      app.get(
        '/all',
        route(async (req, res) => {
          res.json(await req.fanout.all({ payload: (ctx) => ctx.worker('echo', [() => 1]) }));
        }),
      );
      echoErrors(app);
    });
    const direct = await http.get('/direct');
    const inAll = await http.get('/all');
    for (const [res, task, path] of [
      [direct, 'echo', 'args[0].onDone'],
      [inAll, 'payload', 'args[0]'],
    ] as const) {
      // A programming error, not a failed dependency: a 500 whose own message names the task and the argument
      // (it was a 502 "Task `echo` failed" with the reason only in `cause`).
      expect(res.status).toBe(500);
      const error = errorOf(res.body);
      expect(error.name).toBe('WorkerArgumentsError');
      expect(error.tasks).toEqual([task]);
      expect(error.message).toBe(
        `Task \`${task}\` cannot send its arguments to a worker thread: \`${path}\` is a function`,
      );
    }
    expect(fo.stats().workers).toEqual({ busy: 0, idle: 0, pending: 0, shed: 0, terminated: 0, crashed: 0 });
    expect(threadHandles()).toBe(baselineThreads);
  });

  it('answers every worker-script problem with a 500 WorkerScriptError: unknown method, load failure, no script', async () => {
    const unknown = await serve(withPool({ maxWorkers: 1 }), (app) => {
      workerRoute(app);
      echoErrors(app);
    });
    const nope = await unknown.http.get('/worker/nope');
    expect(nope.status).toBe(500);
    expect(errorOf(nope.body)).toMatchObject({
      name: 'WorkerScriptError',
      message:
        'Task `nope` calls `nope`, which the worker script `worker-methods.js` does not register with ' +
        'workerpool.worker({ ... })',
    });

    const broken = await serve(
      { budgetMs: 3000, workers: { script: join(FIXTURES, 'worker-throws-on-load.js'), maxWorkers: 1 } },
      (app) => {
        workerRoute(app);
        echoErrors(app);
      },
    );
    for (let i = 0; i < 2; i++) {
      const res = await broken.http.get('/worker/never');
      expect(res.status).toBe(500);
      expect(errorOf(res.body)).toMatchObject({
        name: 'WorkerScriptError',
        message: expect.stringMatching(/^The worker script `worker-throws-on-load.js` failed to load/),
      });
    }

    const none = await serve({ budgetMs: 3000 }, (app) => {
      workerRoute(app);
      echoErrors(app);
    });
    const res = await none.http.get('/worker/add');
    expect(res.status).toBe(500);
    expect(errorOf(res.body)).toMatchObject({
      name: 'WorkerScriptError',
      message: expect.stringContaining('`workers.script` is not set'),
    });
  });

  it('rejects req.fanout.worker() with a 500 WorkerScriptError when worker threads are disabled (workers: false)', async () => {
    const { http, fo } = await serve({ workers: false }, (app) => {
      workerRoute(app);
      echoErrors(app);
    });
    const res = await http.get('/worker/add').query(args(1, 2));
    expect(res.status).toBe(500);
    expect(errorOf(res.body)).toMatchObject({
      name: 'WorkerScriptError',
      message: 'Worker threads are disabled (`workers: false`); enable them to use `worker()`',
    });
    expect(fo.stats().workers).toEqual({ busy: 0, idle: 0, pending: 0, shed: 0, terminated: 0, crashed: 0 });
    expect(threadHandles()).toBe(baselineThreads);
  });

  describe('worker calls hold no IO slot', () => {
    /** `/cpu?ms=` blocks a thread `ms` ms from a task of all(); `/io` runs a 1 ms IO task and reports its timing. */
    function cpuAndIo(app: Express): void {
      app.get(
        '/cpu',
        route(async (req, res) => {
          const ms = Number(req.query.ms);
          res.json(await req.fanout.all({ cpu: (ctx) => ctx.worker('block', [ms]) }));
        }),
      );
      app.get(
        '/io',
        route(async (req, res) => {
          const { io } = await req.fanout.all({ io: () => sleep(1).then(() => 'io') });
          res.json({ io, timings: req.fanout.timings() });
        }),
      );
      workerRoute(app);
    }

    it('answers a 1 ms IO task of another request at once while a thread is busy and three ctx.worker() calls wait (concurrency 4, maxWorkers 1)', async () => {
      const { http, fo } = await serve(withPool({ maxWorkers: 1 }, { concurrency: 4 }), cpuAndIo);
      await http.get('/cpu').query({ ms: 1 }).expect(200); // the thread is up
      const cpu = [1, 2, 3, 4].map(() =>
        http
          .get('/cpu')
          .query({ ms: 600 })
          .then((r) => r),
      );
      await waitFor(
        () => fo.stats().workers.busy === 1 && fo.stats().workers.pending === 3,
        'one call on the thread and three queued',
      );
      // The four tasks lent their IO slots back while their calls wait or run.
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0 });
      const { value: io, ms } = await timed(http.get('/io'));
      expect(io.status).toBe(200);
      const [timing] = io.body.timings as { name: string; ms: number }[];
      // Before this change the IO task waited for the first CPU call to end: 600 ms here (179 ms in the issue).
      expect(timing!.ms).toBeLessThan(50);
      expect(ms).toBeLessThan(400);
      expect(fo.stats().workers).toMatchObject({ busy: 1, pending: 3 });
      for (const res of await Promise.all(cpu)) expect(res.status).toBe(200);
    });

    it('gives req.fanout.worker() a thread slot and no IO slot at all', async () => {
      const { http, fo } = await serve(
        withPool({ maxWorkers: 1 }, { concurrency: 1, maxQueue: 0 }),
        cpuAndIo,
      );
      await http.get('/worker/block').query(args(1)).expect(200);
      const cpu = [1, 2, 3].map(() =>
        http
          .get('/worker/block')
          .query(args(400))
          .then((r) => r),
      );
      await waitFor(() => fo.stats().workers.pending === 2, 'two calls to queue for the thread');
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0 });
      // With one IO slot and no IO queue, an IO request still finds its slot free.
      const io = await http.get('/io');
      expect(io.status).toBe(200);
      expect((io.body.timings as { ms: number }[])[0]!.ms).toBeLessThan(50);
      for (const res of await Promise.all(cpu)) expect(res.status).toBe(200);
    });

    it('takes the IO slot back before ctx.worker() resolves, waiting for it, so running never exceeds concurrency', async () => {
      let inside = 0;
      let most = 0;
      const io = async (ms: number) => {
        most = Math.max(most, ++inside);
        try {
          await sleep(ms);
        } finally {
          inside--;
        }
      };
      let runningAfterWorker = -1;
      const { http, fo } = await serve(withPool({ maxWorkers: 1 }, { concurrency: 1 }), (app) => {
        app.get(
          '/mixed',
          route(async (req, res) => {
            const { value } = await req.fanout.all({
              value: async (ctx) => {
                const sum = await ctx.worker('sleep', [100]);
                runningAfterWorker = fo.stats().running;
                await io(5);
                return sum;
              },
            });
            res.json({ value, at: performance.now() });
          }),
        );
        app.get(
          '/io',
          route(async (req, res) => {
            await req.fanout.all({ io: () => io(300) });
            res.json({ at: performance.now() });
          }),
        );
        workerRoute(app);
      });
      await http.get('/worker/add').query(args(1, 1)).expect(200);
      const mixed = http.get('/mixed').then((r) => r);
      await waitFor(() => fo.stats().workers.busy === 1, 'the worker call to run');
      const other = await http.get('/io'); // takes the lent slot for 300 ms
      const back = await mixed;
      expect(back.status).toBe(200);
      expect(back.body.value).toBe(100);
      // The worker call ended after ~100 ms, but the task went on only once /io gave the slot back.
      expect(back.body.at).toBeGreaterThanOrEqual(other.body.at as number);
      expect(runningAfterWorker).toBe(1);
      expect(most).toBe(1);
    });

    it('re-takes nothing for a task whose deadline passes while its slot is lent or being re-taken, and leaks nothing', async () => {
      const { http, fo } = await serve(withPool({ maxWorkers: 1 }, { concurrency: 1, graceMs: 0 }), (app) => {
        app.get(
          '/lent',
          route(async (req, res) => {
            res.json(await req.fanout.all({ cpu: (ctx) => ctx.worker('sleep', [Number(req.query.ms)]) }));
          }),
        );
        app.get(
          '/hold',
          route(async (req, res) => {
            res.json(await req.fanout.all({ hold: () => sleep(1000) }));
          }),
        );
        echoErrors(app);
      });
      // Lent at the deadline: the worker call is cancelled and nothing is re-taken.
      const lent = await http.get('/lent').query({ ms: 2000 }).set(BUDGET_HEADER, '200');
      expect(lent.status).toBe(504);
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0 });

      // The cut thread is gone and a fresh one is warm before the second part.
      await waitFor(() => fo.stats().workers.terminated === 1, 'the cut thread to be terminated');
      await waitFor(() => fo.stats().workers.busy === 0, 'the cut thread to be gone');
      expect((await http.get('/lent').query({ ms: 1 })).status).toBe(200);

      // Waiting to re-take at the deadline: /hold took the lent slot and keeps it past the deadline.
      const retaking = http
        .get('/lent')
        .query({ ms: 150 })
        .set(BUDGET_HEADER, '600')
        .then((r) => r);
      await waitFor(() => fo.stats().workers.busy === 1, 'the worker call to run');
      const holding = http.get('/hold').then((r) => r);
      await waitFor(() => fo.stats().running === 1, '/hold to take the lent slot');
      await waitFor(() => fo.stats().queued === 1, 'the re-take to queue');
      expect((await retaking).status).toBe(504);
      expect(fo.stats()).toMatchObject({ running: 1, queued: 0 });
      expect((await holding).status).toBe(200);
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0, workers: { busy: 0, pending: 0 } });
      // close() waits for every lent slot: it would hang on one that leaked.
      const { ms } = await timed(fo.close());
      expect(ms).toBeLessThan(1000);
    });

    it("gives the next thread to the oldest request's call, even when a younger request's call queued first", async () => {
      const file = markFile('arrival');
      const { http, fo } = await serve(withPool({ maxWorkers: 1 }), (app) => {
        workerRoute(app);
        app.get(
          '/late',
          route(async (req, res) => {
            const { marked } = await req.fanout.all({
              marked: async (ctx) => (await sleep(150), ctx.worker('mark', [file, 'old'])),
            });
            res.json({ marked });
          }),
        );
      });
      await http.get('/worker/add').query(args(1, 1)).expect(200);
      const running = http
        .get('/worker/blockThenMark')
        .query(args(500, file, 'running'))
        .then((r) => r);
      await waitFor(() => fo.stats().workers.busy === 1, 'the thread to be busy');
      const old = http.get('/late').then((r) => r); // arrives first, asks for a thread 150 ms later
      await waitFor(() => fo.stats().running === 1, 'the older request to start');
      const young = http
        .get('/worker/mark')
        .query(args(file, 'young'))
        .then((r) => r);
      await waitFor(() => fo.stats().workers.pending === 2, 'both calls to queue');
      expect((await running).status).toBe(200);
      expect((await old).status).toBe(200);
      expect((await young).status).toBe(200);
      expect(marks(file)).toBe('running\nold\nyoung\n');
    });
  });
});
