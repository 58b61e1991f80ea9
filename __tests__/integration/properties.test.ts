import fc from 'fast-check';
import type { TaskEvent, Tasks } from 'express-fanout';
import { delay, sleep, stubborn, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { report, useHarness } from './helpers/harness';

type Outcome = 'ok' | 'throw' | 'reject' | 'rejectNonError' | 'stubborn';

interface TaskModel {
  ms: number;
  outcome: Outcome;
  fallback: boolean;
  timeoutMs: number | undefined;
  deps: number[];
}

const taskArb: fc.Arbitrary<TaskModel> = fc.record({
  ms: fc.integer({ min: 0, max: 40 }),
  outcome: fc.constantFrom<Outcome>('ok', 'ok', 'ok', 'throw', 'reject', 'rejectNonError', 'stubborn'),
  fallback: fc.boolean(),
  timeoutMs: fc.option(fc.integer({ min: 5, max: 80 }), { nil: undefined }),
  deps: fc.array(fc.nat(), { maxLength: 2 }),
});

const scenarioArb = fc.record({
  concurrency: fc.integer({ min: 1, max: 4 }),
  perRequest: fc.integer({ min: 1, max: 4 }),
  maxQueue: fc.integer({ min: 0, max: 30 }),
  useAll: fc.boolean(),
  requests: fc.array(fc.array(taskArb, { minLength: 1, maxLength: 7 }), { minLength: 1, maxLength: 4 }),
});

describe.each(expressVersions)('properties (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('random task sets never exceed the bounds, answer within the budget, and settle every task exactly once', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async ({ concurrency, perRequest, maxQueue, useAll, requests }) => {
        const budgetMs = 250;
        let running = 0;
        let peak = 0;
        let peakPerRequest = 0;
        const events: TaskEvent[] = [];
        const calls = new Map<string, number>();
        const violations: string[] = [];
        const { http, fo } = await serve(
          { concurrency, perRequest, maxQueue, budgetMs, graceMs: 2000, onTask: (e) => events.push(e) },
          (app) =>
            app.get(
              '/:r',
              report(async (req) => {
                const r = Number(req.params.r);
                const model = requests[r]!;
                let mine = 0;
                const tasks: Tasks = {};
                model.forEach((m, i) => {
                  const name = `r${r}t${i}`;
                  // Dependencies only on earlier tasks: no cycles.
                  const after = [...new Set(m.deps.filter((d) => d < i).map((d) => `r${r}t${d}`))];
                  const run = async (ctx: { signal: AbortSignal; results: Record<string, unknown> }) => {
                    calls.set(name, (calls.get(name) ?? 0) + 1);
                    for (const dep of after) {
                      if (!(dep in ctx.results)) violations.push(`${name} started without ${dep}`);
                    }
                    running++;
                    mine++;
                    peak = Math.max(peak, running);
                    peakPerRequest = Math.max(peakPerRequest, mine);
                    try {
                      if (m.outcome === 'throw') throw new Error(name);
                      if (m.outcome === 'stubborn') return await stubborn(m.ms, name);
                      await delay(m.ms, name, ctx.signal);
                      if (m.outcome === 'reject') throw new Error(name);
                      if (m.outcome === 'rejectNonError') throw name;
                      return name;
                    } finally {
                      running--;
                      mine--;
                    }
                  };
                  tasks[name] = {
                    run,
                    after,
                    ...(m.timeoutMs === undefined ? {} : { timeoutMs: m.timeoutMs }),
                    ...(m.fallback ? { fallback: 'fb' } : {}),
                  };
                });
                if (useAll) return req.fanout.all(tasks);
                const settled = await req.fanout.settle(tasks);
                return Object.fromEntries(Object.entries(settled).map(([k, v]) => [k, v.status]));
              }),
            ),
        );
        const started = Date.now();
        const responses = await Promise.all(requests.map((_, r) => http.get(`/${r}`)));
        const elapsed = Date.now() - started;
        for (const res of responses) expect(res.status).toBe(200);
        expect(elapsed).toBeLessThan(budgetMs + 400);
        if (!useAll) {
          for (const [r, res] of responses.entries()) {
            expect(Object.keys(res.body.value).sort()).toEqual(
              requests[r]!.map((_, i) => `r${r}t${i}`).sort(),
            );
            for (const status of Object.values(res.body.value)) {
              expect(['fulfilled', 'rejected', 'timeout', 'aborted', 'shed']).toContain(status);
            }
          }
        }
        // Stubborn tasks finish on their own (<= 40 ms); then every slot is free and every task settled.
        await waitFor(() => fo.stats().running === 0 && fo.stats().queued === 0, 'every slot to free');
        await sleep(5);
        expect(violations).toEqual([]);
        expect(peak).toBeLessThanOrEqual(concurrency);
        expect(peakPerRequest).toBeLessThanOrEqual(perRequest);
        for (const [name, count] of calls) expect([name, count]).toEqual([name, 1]);
        const total = requests.reduce((n, tasks) => n + tasks.length, 0);
        const names = events.map((e) => e.name);
        expect(new Set(names).size).toBe(names.length);
        expect(names).toHaveLength(total);
        const s = fo.stats();
        expect(s.completed + s.failed + s.timedOut + s.aborted + s.shed).toBe(total);
        expect(s.abandoned).toBe(0);
        await fo.close();
      }),
      { numRuns: 20, timeout: 10000, interruptAfterTimeLimit: 60000 },
    );
  }, 120000);
});
