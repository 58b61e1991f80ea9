// Testing routes that use express-fanout: supertest against the app, on Express 5 and 4, with fake
// dependencies; budgets set per test; outcomes read from Server-Timing; fake timers with close().
// #region setup
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { parseServerTiming } from 'express-fanout';
import request from 'supertest';
import { createApp, type Dependencies } from './app';

// Express 4 too, from an npm alias (`npm install -D express4@npm:express@^4`), typed with Express 5's types.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4 = require('express4') as typeof express;

/** Fake dependencies: answer after `ms`, and stop when the task's signal aborts, as real clients do. */
const fakes = (ms: { profile?: number; recommendations?: number; report?: number } = {}): Dependencies => ({
  profile: (id, signal) => sleep(ms.profile ?? 5, { id, name: 'Ada' }, { signal }),
  recommendations: (_id, signal) => sleep(ms.recommendations ?? 5, ['a', 'b'], { signal }),
  report: (signal) => sleep(ms.report ?? 5, { rows: 3 }, { signal }),
});

describe.each([
  ['Express 5', express],
  ['Express 4', express4],
])('the /users route (%s)', (_major, createExpress) => {
  // One middleware per test, closed after it: no worker thread or timer outlives the test file.
  let closers: Array<() => Promise<void>> = [];
  const appWith = (deps: Dependencies, options = {}) => {
    const { app, fo } = createApp(deps, options, createExpress);
    closers.push(() => fo.close());
    return app;
  };
  afterEach(async () => {
    await Promise.all(closers.map((close) => close()));
    closers = [];
  });

  it('answers with both dependencies', async () => {
    const res = await request(appWith(fakes())).get('/users/1').expect(200);
    expect(res.body).toEqual({ profile: { id: '1', name: 'Ada' }, recommendations: ['a', 'b'] });
    const timing = parseServerTiming(res);
    expect(timing.profile?.outcome).toBe('fulfilled');
    expect(timing.recommendations?.outcome).toBe('fulfilled');
  });

  // #endregion

  // #region budgets
  it('falls back when the recommendations miss a short budget, sent as the budget header', async () => {
    // 50 ms instead of the app's 500: the test takes 50 ms, not the whole budget.
    const res = await request(appWith(fakes({ recommendations: 1000 })))
      .get('/users/1')
      .set('x-request-budget-ms', '50')
      .expect(200);
    expect(res.body.recommendations).toEqual([]);
    expect(parseServerTiming(res).recommendations?.outcome).toBe('fallback');
    expect(parseServerTiming(res).total?.ms).toBeLessThan(500);
  });

  it('answers 504 when a required dependency misses the budget', async () => {
    const res = await request(appWith(fakes({ profile: 1000 })))
      .get('/users/1')
      .set('x-request-budget-ms', '50')
      .expect(504);
    expect(parseServerTiming(res).profile?.outcome).toBe('timeout');
  });

  it('gives /report its own 2 s budget, longer than the app-wide 500 ms', async () => {
    const res = await request(appWith(fakes({ report: 700 })))
      .get('/report')
      .expect(200);
    expect(res.body).toEqual({ report: { rows: 3 } });
    expect(parseServerTiming(res).report?.ms).toBeGreaterThanOrEqual(600);
  });

  // #endregion

  // #region outcomes
  it('sheds with 503 and Retry-After when nothing can be admitted', async () => {
    // A profile service that answers only when the test says so: the first request holds the only slot.
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const deps = { ...fakes(), profile: async (id: string) => (await held, { id, name: 'Ada' }) };
    const { app, fo } = createApp(deps, { concurrency: 1, maxQueue: 0, admission: false }, createExpress);
    closers.push(() => fo.close());
    const first = request(app)
      .get('/users/1')
      .then((res) => res);
    while (fo.stats().running === 0) await sleep(5);
    const second = await request(app).get('/users/2').expect(503);
    expect(second.headers['retry-after']).toMatch(/^\d+$/);
    release();
    expect((await first).status).toBe(200);
  });
  // #endregion
});

// #region fake-timers
describe('fake timers and close()', () => {
  it('runs a 500 ms budget in a few real ms, and closes while the fake clock still runs', async () => {
    // Fake the clock, not the event loop: sockets and promises still need nextTick and setImmediate.
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    try {
      // Under a fake clock, fakes answer at once (a real 5 ms timer could lose the race against the fake deadline);
      // the recommendations service never answers and ignores its signal.
      const deps: Dependencies = {
        profile: async (id) => ({ id, name: 'Ada' }),
        recommendations: () => new Promise<string[]>(() => undefined),
        report: async () => ({ rows: 3 }),
      };
      const { app, fo } = createApp(deps, { graceMs: 1000 });
      let res: request.Response | undefined;
      const answered = request(app)
        .get('/users/1')
        .then((r) => (res = r));
      while (res === undefined) await jest.advanceTimersByTimeAsync(50); // 500 fake ms
      await answered;
      expect({ status: res.status, body: res.body }).toEqual({
        status: 200,
        body: expect.objectContaining({ recommendations: [] }),
      });
      // The task ignored its abort, so it keeps its slot for graceMs, on a timer of the fake clock: close()
      // resolves once that clock passes graceMs. Closed after useRealTimers(), it would wait graceMs of real time.
      expect(fo.stats().running).toBe(1);
      const closed = fo.close();
      await jest.advanceTimersByTimeAsync(1000);
      await closed;
      expect(fo.stats()).toMatchObject({ running: 0, abandoned: 1 });
    } finally {
      jest.useRealTimers();
    }
  });
});
// #endregion
