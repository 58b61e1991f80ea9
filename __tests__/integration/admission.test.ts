import { OverloadedError, type TaskEvent } from 'express-fanout';
import { deferred } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { report, useHarness } from './helpers/harness';

// A call that cannot be admitted whole is shed before any of its tasks starts: the outcome fail-fast would
// give after starting the first tasks and shedding a later one, without the wasted work.
describe.each(expressVersions)('admission of a whole call (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('sheds an all() call at once, starting none of its tasks, when a required task finds no slot and no queue room', async () => {
    const started: string[] = [];
    const events: TaskEvent[] = [];
    const hold = deferred<void>();
    const { http, fo } = await serve(
      { concurrency: 2, maxQueue: 0, onTask: (e) => events.push(e) },
      (app) => {
        app.get('/hold', async (req, res) => {
          await req.fanout.run(() => hold.promise, 'hold');
          res.json({ ok: true });
        });
        app.get(
          '/',
          report((req) =>
            req.fanout.all({
              a: () => started.push('a'),
              b: () => started.push('b'),
            }),
          ),
        );
      },
    );
    const holding = http.get('/hold').then((r) => r.status);
    await waitForRunning(fo, 1);
    const { body } = await http.get('/').expect(200);
    expect(body.ok).toBe(false);
    expect(body.error).toMatchObject({ name: 'OverloadedError', status: 503, tasks: ['b'] });
    expect(body.error.headers).toEqual({ 'Retry-After': '1' });
    expect(started).toEqual([]);
    expect(events.filter((e) => e.name !== 'hold').map((e) => [e.name, e.status])).toEqual([
      ['a', 'shed'],
      ['b', 'shed'],
    ]);
    expect(events.every((e) => e.name === 'hold' || e.error instanceof OverloadedError)).toBe(true);
    expect(fo.stats()).toMatchObject({ running: 1, queued: 0, shed: 2 });
    hold.resolve();
    expect(await holding).toBe(200);
  });

  it('admits the call when only tasks with a fallback would be shed, and they answer with their fallback', async () => {
    const started: string[] = [];
    const hold = deferred<void>();
    const { http, fo } = await serve({ concurrency: 2, maxQueue: 0 }, (app) => {
      app.get('/hold', async (req, res) => {
        await req.fanout.run(() => hold.promise, 'hold');
        res.json({ ok: true });
      });
      app.get(
        '/',
        report((req) =>
          req.fanout.all({
            a: () => (started.push('a'), 'a'),
            b: { run: () => (started.push('b'), 'b'), fallback: 'fb' },
          }),
        ),
      );
    });
    const holding = http.get('/hold').then((r) => r.status);
    await waitForRunning(fo, 1);
    const { body } = await http.get('/').expect(200);
    expect(body).toEqual({ ok: true, value: { a: 'a', b: 'fb' } });
    expect(started).toEqual(['a']);
    hold.resolve();
    expect(await holding).toBe(200);
  });

  it('queues what fits: a call is shed only when the queue cannot take what the slots cannot start', async () => {
    const hold = deferred<void>();
    const { http, fo } = await serve({ concurrency: 2, maxQueue: 1 }, (app) => {
      app.get('/hold', async (req, res) => {
        await req.fanout.run(() => hold.promise, 'hold');
        res.json({ ok: true });
      });
      app.get(
        '/',
        report((req) => req.fanout.all({ a: () => 'a', b: () => 'b' })),
      );
    });
    const holding = http.get('/hold').then((r) => r.status);
    await waitForRunning(fo, 1);
    // One free slot and one queue place: both tasks are admitted (b waits for a's slot).
    const { body } = await http.get('/').expect(200);
    expect(body).toEqual({ ok: true, value: { a: 'a', b: 'b' } });
    hold.resolve();
    expect(await holding).toBe(200);
  });
});

async function waitForRunning(fo: { stats(): { running: number } }, n: number): Promise<void> {
  for (let i = 0; i < 200 && fo.stats().running < n; i++) await new Promise((r) => setTimeout(r, 5));
  expect(fo.stats().running).toBe(n);
}
