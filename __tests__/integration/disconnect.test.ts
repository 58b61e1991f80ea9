import { ClientClosedError, gather } from 'express-fanout';
import { deferred, delay, sleep, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { openRequest, useHarness } from './helpers/harness';

describe.each(expressVersions)('client disconnect (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('aborts the running tasks of the request with a ClientClosedError and rejects all() with it (499)', async () => {
    const started = deferred();
    const outcome = deferred<unknown>();
    let taskSignal: AbortSignal | undefined;
    let requestSignal: AbortSignal | undefined;
    const { url, fo } = await serve({}, (app) =>
      app.get('/', (req, res) => {
        requestSignal = req.fanout.signal;
        req.fanout
          .all({
            slow: ({ signal }) => {
              taskSignal = signal;
              started.resolve();
              return delay(5000, 'x', signal);
            },
          })
          .then(
            (v) => res.json(v),
            (error: unknown) => outcome.resolve(error),
          );
      }),
    );
    const client = openRequest(url, '/');
    await started.promise;
    client.abort();
    const error = await outcome.promise;
    expect(error).toBeInstanceOf(ClientClosedError);
    expect((error as ClientClosedError).status).toBe(499);
    expect(taskSignal?.aborted).toBe(true);
    expect(taskSignal?.reason).toBeInstanceOf(ClientClosedError);
    expect(requestSignal?.aborted).toBe(true);
    expect(requestSignal?.reason).toBeInstanceOf(ClientClosedError);
    await waitFor(() => fo.stats().running === 0, 'the slot to free');
    expect(fo.stats().aborted).toBe(1);
  });

  it('drops the queued tasks of the request at once: they never start', async () => {
    const started = deferred();
    const calls: string[] = [];
    const { url, fo } = await serve({ concurrency: 8, perRequest: 1 }, (app) =>
      app.get(
        '/',
        gather({
          first: ({ signal }) => {
            calls.push('first');
            started.resolve();
            return delay(5000, 1, signal);
          },
          second: () => {
            calls.push('second');
            return 2;
          },
          third: { run: () => calls.push('third'), fallback: 0 },
        }),
      ),
    );
    const client = openRequest(url, '/');
    await started.promise;
    expect(fo.stats().queued).toBe(2);
    client.abort();
    await waitFor(() => fo.stats().queued === 0 && fo.stats().running === 0, 'the request to be cleared');
    await sleep(50);
    expect(calls).toEqual(['first']);
    expect(fo.stats().aborted).toBe(3);
  });

  it('lets the next request use the slots of a disconnected one', async () => {
    const started = deferred();
    const { url, http, fo } = await serve({ concurrency: 1 }, (app) => {
      app.get(
        '/slow',
        gather({
          s: ({ signal }) => {
            started.resolve();
            return delay(5000, 1, signal);
          },
        }),
      );
      app.get('/fast', gather({ f: () => 'f' }));
    });
    const client = openRequest(url, '/slow');
    await started.promise;
    const next = http.get('/fast').then((r) => r);
    await waitFor(() => fo.stats().queued === 1, 'the fast task to queue');
    client.abort();
    const res = await next;
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ f: 'f' });
  });

  it('does not count a connection closed after a complete response as a disconnect', async () => {
    const { http, fo, server } = await serve({}, (app) => app.get('/', gather({ a: () => 1 })));
    for (let i = 0; i < 3; i++) await http.get('/').expect(200);
    server.closeAllConnections();
    await sleep(50);
    expect(fo.stats()).toMatchObject({ aborted: 0, completed: 3 });
  });

  it('answers nothing and crashes nothing when the client of a gather() route goes away', async () => {
    const started = deferred();
    const { url, errors } = await serve({}, (app) =>
      app.get(
        '/',
        gather({
          s: ({ signal }) => {
            started.resolve();
            return delay(5000, 1, signal);
          },
        }),
      ),
    );
    const client = openRequest(url, '/');
    await started.promise;
    client.abort();
    expect(await client.response).toBeUndefined();
    await sleep(100);
    // gather() may hand the ClientClosedError to Express or drop it (nobody is listening); nothing else.
    for (const error of errors) expect(error).toBeInstanceOf(ClientClosedError);
  });
});
