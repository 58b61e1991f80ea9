import { gather } from 'express-fanout';
import { deferred, never, sleep, stubborn, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { openRequest, useHarness } from './helpers/harness';

describe.each(expressVersions)('graceMs (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('keeps the slot of an aborted task that ignores its signal until graceMs passes, then writes it off', async () => {
    let nextStartedAt = 0;
    const { http, fo } = await serve({ concurrency: 1, budgetMs: 100, graceMs: 400 }, (app) => {
      app.get('/hung', gather({ hung: never }));
      app.get(
        '/next',
        gather({
          quick: () => {
            nextStartedAt = Date.now();
            return 'quick';
          },
        }),
      );
    });
    await http.get('/hung').expect(504);
    const abortedAt = Date.now();
    // The request is answered, but the task still holds its slot.
    expect(fo.stats()).toMatchObject({ running: 1, abandoned: 0 });
    const next = await http.get('/next').set('x-request-budget-ms', '100');
    // Budget of /next is 100 ms, while the slot is held for ~300 ms more: it times out in the queue.
    expect(next.status).toBe(504);
    expect(nextStartedAt).toBe(0);
    await waitFor(() => fo.stats().abandoned === 1, 'the write-off', 2000);
    const writtenOffAfter = Date.now() - abortedAt;
    expect(writtenOffAfter).toBeGreaterThanOrEqual(250);
    expect(fo.stats().running).toBe(0);
    // The freed slot serves the next request at once.
    await http.get('/next').expect(200, { quick: 'quick' });
  });

  it('counts a held slot in the concurrency bound: the next task starts only when the slot is written off', async () => {
    let nextStartedAt = 0;
    const { http, fo } = await serve(
      { concurrency: 1, budgetMs: 150, maxBudgetMs: 5000, graceMs: 300 },
      (app) => {
        app.get('/hung', gather({ hung: never }));
        app.get(
          '/next',
          gather({
            quick: () => {
              nextStartedAt = Date.now();
              return 'quick';
            },
          }),
        );
      },
    );
    await http.get('/hung').expect(504);
    const abortedAt = Date.now();
    const res = await http.get('/next').set('x-request-budget-ms', '3000').expect(200);
    expect(res.body).toEqual({ quick: 'quick' });
    expect(nextStartedAt - abortedAt).toBeGreaterThanOrEqual(200);
    expect(nextStartedAt - abortedAt).toBeLessThan(1000);
    expect(fo.stats().abandoned).toBe(1);
  });

  it('frees the slot as soon as an aborted task really settles within graceMs, without writing it off', async () => {
    const { http, fo } = await serve({ concurrency: 1, budgetMs: 100, graceMs: 2000 }, (app) => {
      app.get('/late', gather({ late: () => stubborn(250, 'late') }));
    });
    await http.get('/late').expect(504);
    expect(fo.stats().running).toBe(1);
    await waitFor(() => fo.stats().running === 0, 'the task to settle', 1500);
    expect(fo.stats().abandoned).toBe(0);
  });

  it('frees the slot at once with graceMs: 0', async () => {
    const { http, fo } = await serve({ concurrency: 1, budgetMs: 100, graceMs: 0 }, (app) => {
      app.get('/hung', gather({ hung: never }));
      app.get('/next', gather({ quick: () => 'quick' }));
    });
    await http.get('/hung').expect(504);
    await waitFor(() => fo.stats().running === 0, 'the slot to free', 200);
    expect(fo.stats().abandoned).toBe(1);
    await http.get('/next').expect(200);
  });

  it('holds the slot of a task that ignores the client disconnect, then writes it off', async () => {
    const started = deferred();
    const { url, fo } = await serve({ concurrency: 2, graceMs: 200 }, (app) =>
      app.get(
        '/',
        gather({
          hung: () => {
            started.resolve();
            return never();
          },
        }),
      ),
    );
    const client = openRequest(url, '/');
    await started.promise;
    client.abort();
    await sleep(80);
    expect(fo.stats()).toMatchObject({ running: 1, abandoned: 0 });
    await waitFor(() => fo.stats().abandoned === 1, 'the write-off', 2000);
    expect(fo.stats()).toMatchObject({ running: 0, aborted: 1 });
  });

  it('settles nothing twice when a written-off task settles later', async () => {
    const events: string[] = [];
    const { http, fo } = await serve(
      { concurrency: 1, budgetMs: 100, graceMs: 50, onTask: (e) => events.push(`${e.name}:${e.status}`) },
      (app) => app.get('/', gather({ slow: () => stubborn(400, 'late') })),
    );
    await http.get('/').expect(504);
    await waitFor(() => fo.stats().abandoned === 1, 'the write-off');
    await sleep(450);
    expect(events).toEqual(['slow:timeout']);
    expect(fo.stats()).toMatchObject({ running: 0, completed: 0, timedOut: 1, abandoned: 1 });
  });
});
