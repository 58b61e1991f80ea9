import {
  BudgetExceededError,
  ClientClosedError,
  OverloadedError,
  TaskFailedError,
  type Fanout,
  type SettledResults,
  type TaskEvent,
  type Tasks,
} from 'express-fanout';
import { deferred, delay, never, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { openRequest, report, timed, useHarness } from './helpers/harness';

describe.each(expressVersions)('req.fanout.settle() (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  /**
   * Runs `settle(tasks)` in a handler and hands the raw outcome (errors as objects, not JSON) to the test.
   */
  async function settleOnServer<T extends Tasks>(
    tasks: T | (() => T),
    options: Parameters<typeof serve>[0] = {},
    call?: (f: Fanout, tasks: T) => Promise<SettledResults<T>>,
  ) {
    const outcome = deferred<SettledResults<T>>();
    const { http } = await serve({ graceMs: 100, ...options }, (app) =>
      app.get(
        '/',
        report(async (req) => {
          const t = typeof tasks === 'function' ? (tasks as () => T)() : tasks;
          const result = await (call ? call(req.fanout, t) : req.fanout.settle(t));
          outcome.resolve(result);
          return Object.fromEntries(Object.entries(result).map(([k, v]) => [k, v.status]));
        }),
      ),
    );
    return { http, outcome: outcome.promise };
  }

  it('reports fulfilled tasks with their value and duration', async () => {
    const { http, outcome } = await settleOnServer({ a: () => 1, b: () => delay(50, 'b') });
    await http.get('/').expect(200);
    const r = await outcome;
    expect(r.a).toMatchObject({ status: 'fulfilled', value: 1 });
    expect(r.b).toMatchObject({ status: 'fulfilled', value: 'b' });
    expect(r.b.ms).toBeGreaterThanOrEqual(45);
    expect(r.a.ms).toBeGreaterThanOrEqual(0);
  });

  it('reports a failed task as rejected, carrying the original thrown error', async () => {
    const original = new Error('boom');
    const { http, outcome } = await settleOnServer({
      bad: () => Promise.reject(original),
      syncBad: () => {
        throw original;
      },
      odd: () => Promise.reject('a string'),
    });
    await http.get('/').expect(200);
    const r = await outcome;
    expect(r.bad).toMatchObject({ status: 'rejected' });
    expect(r.bad.error).toBe(original);
    expect(r.syncBad.error).toBe(original);
    expect(r.odd).toMatchObject({ status: 'rejected', error: 'a string' });
    expect(r.bad).not.toHaveProperty('value');
  });

  it('never rejects, and does not abort the other tasks when one fails', async () => {
    let otherAborted: boolean | undefined;
    const { http, outcome } = await settleOnServer({
      bad: () => Promise.reject(new Error('x')),
      slow: async ({ signal }) => {
        const v = await delay(150, 'slow', signal);
        otherAborted = signal.aborted;
        return v;
      },
    });
    await http.get('/').expect(200);
    const r = await outcome;
    expect(r.slow).toMatchObject({ status: 'fulfilled', value: 'slow' });
    expect(otherAborted).toBe(false);
  });

  it('reports a task past its timeoutMs as timeout, carrying a BudgetExceededError', async () => {
    const { http, outcome } = await settleOnServer({
      slow: { run: ({ signal }) => delay(3000, 'x', signal), timeoutMs: 100 },
    });
    const { ms } = await timed(http.get('/').expect(200));
    const r = await outcome;
    expect(r.slow.status).toBe('timeout');
    expect(r.slow.error).toBeInstanceOf(BudgetExceededError);
    expect((r.slow.error as BudgetExceededError).tasks).toEqual(['slow']);
    expect(r.slow.ms).toBeGreaterThanOrEqual(90);
    expect(ms).toBeLessThan(450);
  });

  it('reports tasks unfinished at the request deadline as timeout, even those that never settle', async () => {
    const { http, outcome } = await settleOnServer(
      { hung: never, slow: ({ signal }) => delay(5000, 'x', signal), done: () => 'done' },
      { budgetMs: 200 },
    );
    const { ms } = await timed(http.get('/').expect(200));
    const r = await outcome;
    expect(r.hung.status).toBe('timeout');
    expect(r.hung.error).toBeInstanceOf(BudgetExceededError);
    expect(r.slow.status).toBe('timeout');
    expect(r.done).toMatchObject({ status: 'fulfilled', value: 'done' });
    expect(ms).toBeGreaterThanOrEqual(190);
    expect(ms).toBeLessThan(450);
  });

  it('reports a task that found the queue full as shed, carrying an OverloadedError', async () => {
    const gate = deferred<string>();
    const outcome = deferred<SettledResults<{ y: () => string }>>();
    const { http, fo } = await serve({ concurrency: 1, maxQueue: 0 }, (app) => {
      app.get(
        '/hold',
        report((req) => req.fanout.all({ x: () => gate.promise })),
      );
      app.get(
        '/',
        report(async (req) => {
          outcome.resolve(await req.fanout.settle({ y: () => 'y' }));
        }),
      );
    });
    const hold = http.get('/hold').then((r) => r);
    await waitFor(() => fo.stats().running === 1, 'the slot to be taken');
    await http.get('/').expect(200);
    const r = await outcome.promise;
    expect(r.y.status).toBe('shed');
    expect(r.y.error).toBeInstanceOf(OverloadedError);
    gate.resolve('x');
    await hold;
  });

  it('rejects with ClientClosedError once the client went away, even with fallbacks, and aborts every task at once', async () => {
    const started = deferred();
    const outcome = deferred<unknown>();
    const events: TaskEvent[] = [];
    const calls: string[] = [];
    const { url } = await serve({ perRequest: 1, onTask: (e) => events.push(e) }, (app) =>
      app.get('/', (req) => {
        req.fanout
          .settle({
            running: ({ signal }) => {
              calls.push('running');
              started.resolve();
              return delay(5000, 'x', signal);
            },
            queued: () => {
              calls.push('queued');
              return 'q';
            },
            optional: {
              run: () => {
                calls.push('optional');
                return 'o';
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
    const error = await outcome.promise;
    expect(error).toBeInstanceOf(ClientClosedError);
    expect(error).toMatchObject({ status: 499, tasks: ['running', 'queued', 'optional'] });
    expect(events.map((e) => [e.name, e.status])).toEqual([
      ['running', 'aborted'],
      ['queued', 'aborted'],
      ['optional', 'aborted'],
    ]);
    expect(events.every((e) => e.error instanceof ClientClosedError)).toBe(true);
    expect(calls).toEqual(['running']);
  });

  it('puts the fallback in value whatever the status, with the error beside it', async () => {
    const original = new Error('x');
    // Three slots and no queue: the first three tasks run, the fourth is shed.
    const { http, outcome } = await settleOnServer(
      () => ({
        ok: { run: () => delay(20, 'real'), fallback: 'fb-ok' },
        failed: { run: () => delay(20, 0).then(() => Promise.reject(original)), fallback: 'fb-failed' },
        timedOut: { run: ({ signal }) => delay(3000, 'x', signal), timeoutMs: 50, fallback: 'fb-timeout' },
        shed: {
          run: () => 'never',
          fallback: (e: unknown) => (e instanceof OverloadedError ? 'fb-shed' : '?'),
        },
      }),
      { concurrency: 3, maxQueue: 0 },
    );
    await http.get('/').expect(200);
    const r = await outcome;
    expect(r.ok).toMatchObject({ status: 'fulfilled', value: 'real' });
    expect(r.failed).toMatchObject({ status: 'rejected', value: 'fb-failed' });
    expect(r.failed.error).toBe(original);
    expect(r.timedOut).toMatchObject({ status: 'timeout', value: 'fb-timeout' });
    expect(r.timedOut.error).toBeInstanceOf(BudgetExceededError);
    expect(r.shed).toMatchObject({ status: 'shed', value: 'fb-shed' });
    expect(r.shed.error).toBeInstanceOf(OverloadedError);
  });

  it('reports a task whose dependency failed (without fallback) as rejected with a TaskFailedError naming it, and never runs it', async () => {
    let ran = false;
    const original = new Error('root cause');
    const { http, outcome } = await settleOnServer({
      a: () => Promise.reject(original),
      b: {
        run: () => {
          ran = true;
          return 'b';
        },
        after: ['a'],
      },
      c: { run: ({ results }) => results.b, after: ['b'] },
    });
    await http.get('/').expect(200);
    const r = await outcome;
    expect(r.a.status).toBe('rejected');
    expect(r.a.error).toBe(original);
    expect(r.b.status).toBe('rejected');
    expect(r.b.error).toBeInstanceOf(TaskFailedError);
    expect((r.b.error as TaskFailedError).message).toContain('b');
    expect((r.b.error as TaskFailedError).tasks).toContain('b');
    expect(r.c.status).toBe('rejected');
    expect(r.c.error).toBeInstanceOf(TaskFailedError);
    expect((r.c.error as TaskFailedError).tasks).toContain('c');
    expect(ran).toBe(false);
  });

  it('runs a dependent whose failed dependency has a fallback, with the fallback in ctx.results', async () => {
    const { http, outcome } = await settleOnServer({
      a: { run: () => Promise.reject(new Error('x')), fallback: 41 },
      b: { run: ({ results }) => (results.a as number) + 1, after: ['a'] },
    });
    await http.get('/').expect(200);
    const r = await outcome;
    expect(r.a).toMatchObject({ status: 'rejected', value: 41 });
    expect(r.b).toMatchObject({ status: 'fulfilled', value: 42 });
  });

  it('settles a call budget: settle(tasks, { budgetMs }) times out its own tasks only', async () => {
    const { http, outcome } = await settleOnServer(
      { hung: never, quick: () => 'q' },
      { budgetMs: 5000 },
      (f, t) => f.settle(t, { budgetMs: 100 }),
    );
    const { ms } = await timed(http.get('/').expect(200));
    const r = await outcome;
    expect(r.hung.status).toBe('timeout');
    expect(r.quick.status).toBe('fulfilled');
    expect(ms).toBeLessThan(450);
  });

  it('gives each entry its status and ms, with value when fulfilled and error when not', async () => {
    const original = new Error('x');
    const { http, outcome } = await settleOnServer({
      a: () => 1,
      b: () => Promise.reject(original),
    });
    await http.get('/').expect(200);
    const r = await outcome;
    expect(r.a).toEqual({ status: 'fulfilled', value: 1, ms: expect.any(Number) });
    expect(r.b).toEqual({ status: 'rejected', error: original, ms: expect.any(Number) });
  });
});
