import type { Tasks } from 'express-fanout';
import { deferred, sleep, waitFor, type Deferred } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { report, useHarness } from './helpers/harness';

describe.each(expressVersions)('arrival-order fairness under saturation (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  /**
   * `requests` requests of `tasksPer` hand-settled tasks each arrive one after another at a saturated
   * scheduler; then the test settles the running tasks one at a time, oldest first. Every time a task
   * starts, no earlier request may have a waiting task that its perRequest bound would have let start.
   */
  async function saturate(concurrency: number, perRequest: number, requests: number, tasksPer: number) {
    const startedLog: string[] = [];
    const gates = new Map<string, Deferred<number>>();
    const started = new Array<number>(requests).fill(0);
    const settled = new Array<number>(requests).fill(0);
    const violations: string[] = [];
    const answered: number[] = [];
    const { http, fo } = await serve({ concurrency, perRequest, budgetMs: 30000, maxQueue: 10000 }, (app) =>
      app.get(
        '/:r',
        report(async (req) => {
          const r = Number(req.params.r);
          const tasks: Tasks = {};
          for (let j = 0; j < tasksPer; j++) {
            tasks[`t${j}`] = () => {
              for (let k = 0; k < r; k++) {
                const waiting = tasksPer - started[k]!;
                const running = started[k]! - settled[k]!;
                if (waiting > 0 && running < perRequest) {
                  violations.push(
                    `r${r}t${j} started while r${k} had ${waiting} waiting and ${running} running`,
                  );
                }
              }
              started[r]!++;
              const label = `r${r}t${j}`;
              startedLog.push(label);
              const gate = deferred<number>();
              gates.set(label, gate);
              return gate.promise;
            };
          }
          return req.fanout.all(tasks);
        }),
      ),
    );

    const responses: Promise<unknown>[] = [];
    for (let r = 0; r < requests; r++) {
      responses.push(
        http.get(`/${r}`).then((res) => {
          answered.push(r);
          expect(res.body.ok).toBe(true);
        }),
      );
      const expected = (r + 1) * tasksPer;
      await waitFor(() => fo.stats().running + fo.stats().queued === expected, `request ${r} to be queued`);
    }
    expect(fo.stats().running).toBe(Math.min(concurrency, requests * tasksPer));

    let done = 0;
    const total = requests * tasksPer;
    while (done < total) {
      const label = startedLog.find((l) => !gates.get(l)!.settled);
      if (label === undefined)
        throw new Error(`nothing running with ${total - done} tasks left: ${startedLog.join(' ')}`);
      settled[Number(label.slice(1, label.indexOf('t')))]!++;
      gates.get(label)!.resolve(1);
      done++;
      await waitFor(
        () => fo.stats().running + fo.stats().queued === total - done,
        `${label} to release its slot`,
      );
      await sleep(1);
    }
    await Promise.all(responses);
    return { startedLog, violations, answered };
  }

  it('serves requests strictly in arrival order with concurrency 2, perRequest 2', async () => {
    const { startedLog, violations, answered } = await saturate(2, 2, 5, 3);
    expect(violations).toEqual([]);
    const expected: string[] = [];
    for (let r = 0; r < 5; r++) for (let j = 0; j < 3; j++) expected.push(`r${r}t${j}`);
    expect(startedLog).toEqual(expected);
    expect(answered).toEqual([0, 1, 2, 3, 4]);
  });

  it('gives a freed slot to the oldest request that may use it when perRequest < concurrency', async () => {
    const { startedLog, violations, answered } = await saturate(3, 2, 5, 4);
    expect(violations).toEqual([]);
    // r0 takes two slots, r1 the third; when r0's first task ends, r0 (not r1) gets the slot.
    expect(startedLog.slice(0, 4)).toEqual(['r0t0', 'r0t1', 'r1t0', 'r0t2']);
    expect(answered).toEqual([0, 1, 2, 3, 4]);
  });

  it('keeps arrival order with perRequest 1', async () => {
    const { violations, answered } = await saturate(4, 1, 6, 3);
    expect(violations).toEqual([]);
    expect(answered).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('keeps goodput at the limit: the earliest requests finish within the budget instead of all timing out', async () => {
    // 20 requests of 4 tasks of 50 ms on 4 slots need 1000 ms in all; with a 700 ms budget, serving them in
    // arrival order completes the first dozen or so, while interleaving them would complete almost none.
    // Admission is off: this is about the queue's order. With it, a request that arrives to a queue too long
    // for its budget is shed at once, and a later one may fit once the queue has drained a little, so the
    // successes need not be a prefix (overload.test.ts covers that case).
    const arrived: number[] = [];
    const options = {
      concurrency: 4,
      perRequest: 4,
      budgetMs: 700,
      maxQueue: 10000,
      admission: false,
    } as const;
    const { http } = await serve(options, (app) =>
      app.get(
        '/:r',
        report(async (req) => {
          arrived.push(Number(req.params.r));
          const tasks: Tasks = {};
          for (let j = 0; j < 4; j++) tasks[`t${j}`] = () => sleep(50).then(() => j);
          return req.fanout.all(tasks);
        }),
      ),
    );
    const outcomes: Promise<boolean>[] = [];
    for (let r = 0; r < 20; r++) {
      outcomes.push(http.get(`/${r}`).then((res) => res.body.ok === true));
      await waitFor(() => arrived.length === r + 1, `request ${r} to arrive`);
    }
    const ok = await Promise.all(outcomes);
    const succeeded = ok.filter(Boolean).length;
    expect(succeeded).toBeGreaterThanOrEqual(6);
    // The ones that made it are the first to arrive.
    expect(ok).toEqual(ok.map((_, i) => i < succeeded));
  });
});
