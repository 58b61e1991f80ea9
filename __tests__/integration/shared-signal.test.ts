import { SiblingFailedError, TaskFailedError } from 'express-fanout';
import { delay } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { route, useHarness } from './helpers/harness';

// The plain required tasks of an all() share one abort signal (one AbortController a call, not one a task): what
// each task's `ctx.signal` promises must hold all the same. A task with a policy of its own (a fallback, a
// timeout, retries, a hedge, a key) and every task of settle() keep a signal of their own.
describe.each(expressVersions)('ctx.signal of a call’s tasks (%s)', (_version, express) => {
  const { serve } = useHarness(express);
  /** An app with the defaults whose one route, `/`, is `handler`. */
  const serveRoute = (handler: Parameters<typeof route>[0]) =>
    serve({}, (app) => app.get('/', route(handler)));

  it('aborts a running sibling when a required task fails, and the failed task’s own signal too', async () => {
    const signals: Record<string, AbortSignal> = {};
    const { http } = await serveRoute(async (req, res) => {
      try {
        await req.fanout.all({
          slow: ({ signal }) => ((signals.slow = signal), delay(5000, 1, signal)),
          broken: async ({ signal }) => {
            signals.broken = signal;
            await delay(10, 0);
            throw new Error('down');
          },
        });
      } catch (error) {
        res.status(502).json({ failed: (error as TaskFailedError).tasks });
      }
    });
    const started = performance.now();
    await http.get('/').expect(502, { failed: ['broken'] });
    expect(performance.now() - started).toBeLessThan(2000);
    expect(signals.slow!.aborted).toBe(true);
    expect(signals.slow!.reason).toBeInstanceOf(SiblingFailedError);
    expect(signals.broken!.aborted).toBe(true);
  });

  it('aborts a failed task’s signal even when its siblings had all finished', async () => {
    const signals: AbortSignal[] = [];
    const { http } = await serveRoute(async (req, res) => {
      try {
        await req.fanout.all({
          quick: ({ signal }) => (signals.push(signal), Promise.resolve(1)),
          late: async ({ signal }) => {
            signals.push(signal);
            await delay(20, 0);
            throw new Error('down');
          },
        });
      } catch {
        res.status(502).end();
      }
    });
    await http.get('/').expect(502);
    expect(signals).toHaveLength(2);
    for (const signal of signals) expect(signal.aborted).toBe(true);
    expect(signals[1]!.reason).toBeInstanceOf(TaskFailedError);
  });

  it('a task with a fallback fails alone: its siblings’ signals stay unaborted', async () => {
    const signals: Record<string, AbortSignal> = {};
    const { http } = await serveRoute(async (req, res) => {
      res.json(
        await req.fanout.all({
          a: ({ signal }) => ((signals.a = signal), delay(40, 'a', signal)),
          b: ({ signal }) => ((signals.b = signal), delay(40, 'b', signal)),
          optional: {
            run: async ({ signal }) => {
              signals.optional = signal;
              throw new Error('down');
            },
            fallback: 'none',
          },
        }),
      );
    });
    await http.get('/').expect(200, { a: 'a', b: 'b', optional: 'none' });
    expect(signals.optional!.aborted).toBe(true);
    expect(signals.a!.aborted).toBe(false);
    expect(signals.b!.aborted).toBe(false);
    expect(signals.a).not.toBe(signals.optional);
  });

  it('a task with its own timeout is aborted alone, and settle() tasks each have their own', async () => {
    const signals: Record<string, AbortSignal> = {};
    const { http } = await serveRoute(async (req, res) => {
      const settled = await req.fanout.settle({
        x: ({ signal }) => ((signals.x = signal), delay(30, 'x', signal)),
        y: async ({ signal }) => {
          signals.y = signal;
          throw new Error('down');
        },
      });
      const all = await req.fanout.all({
        p: ({ signal }) => ((signals.p = signal), delay(60, 'p', signal)),
        q: {
          run: ({ signal }) => ((signals.q = signal), delay(5000, 'q', signal)),
          timeoutMs: 20,
          fallback: 0,
        },
      });
      res.json({ x: settled.x.status, y: settled.y.status, ...all });
    });
    await http.get('/').expect(200, { x: 'fulfilled', y: 'rejected', p: 'p', q: 0 });
    expect(signals.y!.aborted).toBe(true);
    expect(signals.x!.aborted).toBe(false);
    expect(signals.q!.aborted).toBe(true);
    expect(signals.p!.aborted).toBe(false);
  });
});
