import type { Request } from 'express';
import { OverloadedError, type FanoutOptions, type TaskEvent } from 'express-fanout';
import { deferred } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { report, useHarness } from './helpers/harness';

// A call that cannot be admitted whole is shed before any of its tasks starts: the outcome fail-fast would
// give after starting the first tasks and shedding a later one, without the wasted work.
describe.each(expressVersions)('admission of a whole call (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  /** A server whose `/hold` request keeps one slot busy until the test lets it go, and the given `/` route. */
  async function serveHolding(options: FanoutOptions, tasks: (req: Request) => Promise<unknown>) {
    const hold = deferred<void>();
    const served = await serve(options, (app) => {
      app.get('/hold', async (req, res) => {
        await req.fanout.run(() => hold.promise, 'hold');
        res.json({ ok: true });
      });
      app.get('/', report(tasks));
    });
    const holding = served.http.get('/hold').then((r) => r.status);
    await waitForRunning(served.fo, 1);
    const release = async () => {
      hold.resolve();
      expect(await holding).toBe(200);
    };
    return { ...served, release };
  }

  it('sheds an all() call at once, starting none of its tasks, when a required task finds no slot and no queue room', async () => {
    const started: string[] = [];
    const events: TaskEvent[] = [];
    const { http, fo, release } = await serveHolding(
      { concurrency: 2, maxQueue: 0, onTask: (e) => events.push(e) },
      (req) => req.fanout.all({ a: () => started.push('a'), b: () => started.push('b') }),
    );
    const { body } = await http.get('/').expect(200);
    expect(body.ok).toBe(false);
    expect(body.error).toMatchObject({
      name: 'OverloadedError',
      status: 503,
      tasks: ['b'],
      message: 'Task `b` shed: no room for the 2 required tasks of the call (1/2 running, 0/0 queued)',
    });
    expect(body.error.headers).toEqual({ 'Retry-After': '1' });
    expect(started).toEqual([]);
    expect(events.map((e) => [e.name, e.status])).toEqual([
      ['a', 'shed'],
      ['b', 'shed'],
    ]);
    expect(events.every((e) => e.error instanceof OverloadedError)).toBe(true);
    expect(fo.stats()).toMatchObject({ running: 1, queued: 0, shed: 2 });
    await release();
  });

  it('admits the call when only tasks with a fallback would be shed, and they answer with their fallback', async () => {
    const started: string[] = [];
    const { http, release } = await serveHolding({ concurrency: 2, maxQueue: 0 }, (req) =>
      req.fanout.all({
        a: () => (started.push('a'), 'a'),
        b: { run: () => (started.push('b'), 'b'), fallback: 'fb' },
      }),
    );
    const { body } = await http.get('/').expect(200);
    expect(body).toEqual({ ok: true, value: { a: 'a', b: 'fb' } });
    expect(started).toEqual(['a']);
    await release();
  });

  it('gives the room to the required tasks first, whatever the order of the call', async () => {
    const started: string[] = [];
    const { http } = await serve({ concurrency: 2, maxQueue: 0 }, (app) =>
      app.get(
        '/',
        report((req) =>
          req.fanout.all({
            extra: { run: () => (started.push('extra'), 'x'), fallback: 'fb' },
            a: () => (started.push('a'), 'a'),
            b: () => (started.push('b'), 'b'),
          }),
        ),
      ),
    );
    const { body } = await http.get('/').expect(200);
    expect(body).toEqual({ ok: true, value: { extra: 'fb', a: 'a', b: 'b' } });
    expect(started).toEqual(['a', 'b']);
  });

  it('queues what fits: a call is shed only when the queue cannot take what the slots cannot start', async () => {
    const { http, release } = await serveHolding({ concurrency: 2, maxQueue: 1 }, (req) =>
      req.fanout.all({ a: () => 'a', b: () => 'b' }),
    );
    // One free slot and one queue place: both tasks are admitted (b waits for a's slot).
    const { body } = await http.get('/').expect(200);
    expect(body).toEqual({ ok: true, value: { a: 'a', b: 'b' } });
    await release();
  });
});

async function waitForRunning(fo: { stats(): { running: number } }, n: number): Promise<void> {
  for (let i = 0; i < 200 && fo.stats().running < n; i++) await new Promise((r) => setTimeout(r, 5));
  expect(fo.stats().running).toBe(n);
}
