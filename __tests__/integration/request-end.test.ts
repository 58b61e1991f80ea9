// The edges of a request's life: a response that is over before the handler first uses `req.fanout`, and a
// failure or deadline that frees slots while siblings of the same call still wait for one.
import { deferred, delay, never, sleep, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { openRequest, report, useHarness } from './helpers/harness';

describe.each(expressVersions)('the end of a request (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('aborts at once the tasks of a request whose client left before the handler first used req.fanout', async () => {
    const outcome = deferred<{ error: unknown; ms: number; signalAborted: boolean }>();
    const gone = deferred<void>();
    const { url } = await serve({ budgetMs: 5000 }, (app) => {
      app.get('/', async (req, res) => {
        res.on('close', () => gone.resolve());
        await gone.promise; // e.g. an authentication lookup, during which the client leaves
        const started = Date.now();
        const error = await req.fanout.settle({ a: ({ signal }) => delay(2000, 'done', signal) }).then(
          () => undefined,
          (e: unknown) => e,
        );
        outcome.resolve({ error, ms: Date.now() - started, signalAborted: req.fanout.signal.aborted });
      });
    });
    const request = openRequest(url, '/');
    await sleep(50);
    request.abort();
    const { error, ms, signalAborted } = await outcome.promise;
    expect(error).toMatchObject({ name: 'ClientClosedError', status: 499, tasks: ['a'] });
    expect(ms).toBeLessThan(500);
    expect(signalAborted).toBe(true);
  });

  it('never queues a task submitted after the response was sent', async () => {
    const hold = deferred<void>();
    const late = deferred<unknown>();
    const { http, fo } = await serve({ concurrency: 1 }, (app) => {
      app.get('/hold', async (req, res) => {
        await req.fanout.run(() => hold.promise, 'hold');
        res.json({ ok: true });
      });
      app.get('/', (req, res) => {
        res.json({ sent: true });
        res.on('close', () => {
          req.fanout.run(() => 'late', 'late').then(late.resolve, late.resolve);
        });
      });
    });
    const holding = http.get('/hold').then((r) => r.status);
    await waitFor(() => fo.stats().running === 1, 'the slot to be held');
    await http.get('/').expect(200, { sent: true });
    const error = await late.promise;
    expect(error).toMatchObject({ name: 'FanoutError', tasks: ['late'] });
    expect(String((error as Error).message)).toBe('Task `late` aborted: the response was already sent');
    expect(fo.stats()).toMatchObject({ running: 1, queued: 0 });
    hold.resolve();
    expect(await holding).toBe(200);
  });

  it.each([0, 1000])(
    'drops the queued siblings of a failed task without starting them (graceMs %i)',
    async (graceMs) => {
      const started: string[] = [];
      const { http, fo } = await serve({ concurrency: 1, graceMs }, (app) =>
        app.get(
          '/',
          report((req) =>
            req.fanout.all({
              a: () => (started.push('a'), delay(20, 0).then(() => Promise.reject(new Error('a failed')))),
              b: () => (started.push('b'), never()),
              c: () => (started.push('c'), never()),
            }),
          ),
        ),
      );
      const { body } = await http.get('/').expect(200);
      expect(body.error).toMatchObject({ name: 'TaskFailedError', tasks: ['a'] });
      expect(started).toEqual(['a']);
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0, failed: 1, aborted: 2 });
    },
  );

  it('drops the queued siblings at the deadline without starting them, even when the running one frees its slot at once', async () => {
    const started: string[] = [];
    const { http, fo } = await serve({ concurrency: 1, budgetMs: 100, graceMs: 0 }, (app) =>
      app.get(
        '/',
        report((req) =>
          req.fanout.settle({
            a: () => (started.push('a'), never()),
            b: () => (started.push('b'), never()),
            c: () => (started.push('c'), never()),
          }),
        ),
      ),
    );
    const { body } = await http.get('/').expect(200);
    expect(body.value).toEqual({
      a: expect.objectContaining({ status: 'timeout' }),
      b: expect.objectContaining({ status: 'timeout' }),
      c: expect.objectContaining({ status: 'timeout' }),
    });
    expect(started).toEqual(['a']);
    expect(fo.stats()).toMatchObject({ running: 0, queued: 0, timedOut: 3, abandoned: 1 });
  });
});
