import supertest from 'supertest';
import { fanout, gather, parseServerTiming } from 'express-fanout';
import { delay, never, within } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { timed, useHarness } from './helpers/harness';

describe.each(expressVersions)('testing one’s own routes (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('parseServerTiming reads a supertest response: the fallback, the queue wait and the total', async () => {
    const { http } = await serve({ budgetMs: 200, graceMs: 50, concurrency: 1, admission: false }, (app) =>
      app.get(
        '/',
        gather({
          db: ({ signal }) => delay(30, 'row', signal),
          'user profile': ({ signal }) => delay(10, 'me', signal),
          api: { run: never, fallback: 'cached', timeoutMs: 60 },
        }),
      ),
    );
    const res = await http.get('/').expect(200);
    expect(res.body).toEqual({ db: 'row', 'user profile': 'me', api: 'cached' });
    const timing = parseServerTiming(res);
    expect(Object.keys(timing)).toEqual(['db', 'user_profile', 'api', 'total']);
    expect(timing.db!.outcome).toBe('fulfilled');
    expect(timing.user_profile!.queuedMs).toBeGreaterThanOrEqual(20);
    expect(timing.api!.outcome).toBe('fallback');
    expect(timing.total!.ms).toBeGreaterThanOrEqual(timing.db!.ms);
  });
});

describe.each(expressVersions)('close() and fake timers (%s)', (_version, express) => {
  it('closes while the fake clock still runs: advancing past graceMs writes off a task that ignores its signal', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    try {
      const fo = fanout({ budgetMs: 1000, graceMs: 500 });
      const app = express();
      app.use(fo);
      app.get('/', gather({ slow: { run: never, fallback: 'cached' } }));
      let res: supertest.Response | undefined;
      const response = supertest(app)
        .get('/')
        .then((r) => (res = r));
      // Real sockets, a fake deadline: the clock is advanced until the answer is in (1000 fake ms, in a few real).
      while (res === undefined) await jest.advanceTimersByTimeAsync(100);
      await response;
      expect(res.body).toEqual({ slow: 'cached' });
      // The task ignored its abort: it keeps its slot for graceMs, on a timer of the fake clock.
      expect(fo.stats().running).toBe(1);
      const closed = fo.close();
      await jest.advanceTimersByTimeAsync(500);
      await closed;
      expect(fo.stats()).toMatchObject({ running: 0, abandoned: 1 });
    } finally {
      jest.useRealTimers();
    }
  });

  it('close() after useRealTimers() does not hang on a grace timer the fake clock made (it waited for jest’s timeout)', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    let fo: ReturnType<typeof fanout>;
    try {
      fo = fanout({ budgetMs: 1000, graceMs: 100 });
      const app = express();
      app.use(fo);
      app.get('/', gather({ slow: { run: never, fallback: 'cached' } }));
      let res: supertest.Response | undefined;
      const response = supertest(app)
        .get('/')
        .then((r) => (res = r));
      while (res === undefined) await jest.advanceTimersByTimeAsync(100);
      await response;
      expect(res.body).toEqual({ slow: 'cached' });
      expect(fo.stats().running).toBe(1);
    } finally {
      jest.useRealTimers();
    }
    // close() bounds the grace on the clock of its own call: graceMs of real time at most.
    const { ms } = await timed(within(fo.close(), 2000, 'close() after useRealTimers()'));
    expect(fo.stats()).toMatchObject({ running: 0, abandoned: 1 });
    expect(ms).toBeGreaterThanOrEqual(90);
    expect(ms).toBeLessThan(1500);
  });
});
