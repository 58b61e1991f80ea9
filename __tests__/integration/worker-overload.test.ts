// Worker calls under admission, with a real pool (one thread, the fixture's `block`, which holds its thread
// for a number of wall-clock ms): a burst that cannot all finish in the budget is answered by fast 503s, not by
// 504s at the deadline; a load the thread keeps up with is never shed. Tolerances are wide: this runs on
// loaded CI machines, and the point is the kind of answer, not its exact count.
import { join } from 'node:path';
import { expressVersions } from './helpers/express-versions';
import { parseServerTiming, route, useHarness, type Served } from './helpers/harness';
import type { Express, NextFunction, Request, Response } from 'express';
import type { FanoutOptions } from 'express-fanout';

const METHODS = join(__dirname, '..', 'fixtures', 'worker-methods.js');

/** `GET /block?ms=N` answers after `req.fanout.worker('block', [N])`; errors answer with their status and headers. */
function blockRoute(app: Express): void {
  app.get(
    '/block',
    route(async (req, res) => {
      res.json({ value: await req.fanout.worker('block', [Number(req.query.ms)]) });
    }),
  );
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = error as { status?: number; headers?: Record<string, string> };
    if (e.headers) res.set(e.headers);
    res.status(e.status ?? 500).end();
  });
}

interface Answer {
  status: number;
  /** From when the middleware saw the request to the answer (Server-Timing's `total`): the client, in this same
   * loaded process, adds its own delays. */
  ms: number;
  retryAfter: string | null;
}

async function get(served: Served, path: string): Promise<Answer> {
  const response = await fetch(`${served.url}${path}`);
  await response.arrayBuffer();
  const total = parseServerTiming(response.headers.get('server-timing') ?? undefined).find(
    (entry) => entry.name === 'total',
  );
  return {
    status: response.status,
    ms: total?.dur ?? Number.NaN,
    retryAfter: response.headers.get('retry-after'),
  };
}

/**
 * One thread; Server-Timing on. The process's door (`eventLoop`) is off: these tests are about the worker queue,
 * and on a loaded machine the door may shed some requests too (3 of the 60 of the healthy load below once, at a load
 * average of 20), which would blur what the worker queue did.
 */
const options = (budgetMs: number): FanoutOptions => ({
  budgetMs,
  serverTiming: true,
  eventLoop: false,
  workers: { script: METHODS, maxWorkers: 1 },
});

const count = (answers: Answer[], status: number): number =>
  answers.filter((a) => a.status === status).length;
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[values.length >> 1] ?? NaN;

describe.each(expressVersions)('worker overload (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('answers a burst the thread cannot finish in time with fast 503s (Retry-After), not 504s at the deadline', async () => {
    const served = await serve(options(400), blockRoute);
    // The pool measures `block` first: 20 ms a call.
    for (let i = 0; i < 3; i++) expect((await get(served, '/block?ms=20')).status).toBe(200);

    // 60 calls at once, ~20 of which one thread can finish in 400 ms.
    const answers = await Promise.all(Array.from({ length: 60 }, () => get(served, '/block?ms=20')));
    const shed = answers.filter((a) => a.status === 503);
    expect(count(answers, 200)).toBeGreaterThanOrEqual(5);
    expect(shed.length).toBeGreaterThanOrEqual(20);
    // Before admission every call waited: ~40 answers were 504s at 400 ms.
    expect(count(answers, 504)).toBeLessThanOrEqual(6);
    expect(count(answers, 200) + shed.length + count(answers, 504)).toBe(60);
    for (const answer of shed) expect(answer.retryAfter).toBe('1');
    // Shed when submitted (a few dropped when their turn came too late), not at the deadline.
    expect(median(shed.map((a) => a.ms))).toBeLessThan(400 / 2);
    const { workers, shed: shedTotal } = served.fo.stats();
    expect(workers.shed).toBe(shed.length);
    expect(shedTotal).toBe(shed.length);
  });

  it('sheds fast from the first burst too, before the pool has measured anything', async () => {
    const served = await serve(options(1500), blockRoute);
    // 100 calls of 30 ms at once on a pool that has never run one (its thread starts with the first call).
    const answers = await Promise.all(Array.from({ length: 100 }, () => get(served, '/block?ms=30')));
    expect(count(answers, 200)).toBeGreaterThanOrEqual(5);
    expect(count(answers, 503)).toBeGreaterThanOrEqual(20);
    // Without the second look once the first call is measured, every call beyond ~45 was a 504.
    expect(count(answers, 504)).toBeLessThanOrEqual(10);
    expect(served.fo.stats().workers.shed).toBe(count(answers, 503));
  });

  it('sheds nothing while the thread keeps up with the load', async () => {
    const served = await serve(options(2000), blockRoute);
    // Four clients, one call each at a time: at most three wait behind the running one.
    const answers = (
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          const mine: Answer[] = [];
          for (let i = 0; i < 15; i++) mine.push(await get(served, '/block?ms=5'));
          return mine;
        }),
      )
    ).flat();
    expect(answers.map((a) => a.status)).toEqual(Array(60).fill(200));
    expect(served.fo.stats()).toMatchObject({ shed: 0, timedOut: 0, workers: { shed: 0 } });
  });
});
