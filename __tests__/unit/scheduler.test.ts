import fc from 'fast-check';
import { Lane, Scheduler, type Job } from '../../lib/scheduler';
import { TestJob } from './helpers/test-job';

function setup(concurrency: number, perRequest: number, maxQueue: number) {
  const scheduler = new Scheduler(concurrency, perRequest, maxQueue);
  const log: string[] = [];
  let id = 0;
  const lane = (arrival: number) => new Lane(arrival, id++);
  const job = (l: Lane, label: string) => new TestJob(l, label, log);
  return { scheduler, log, lane, job };
}

describe('Scheduler', () => {
  it('starts a job at once while a slot is free', () => {
    const { scheduler, lane, job } = setup(2, 2, 10);
    const a = lane(1);
    const j = job(a, 'a1');
    expect(scheduler.submit(a, j)).toBe('started');
    expect(j.started).toBe(true);
    expect(scheduler.running).toBe(1);
  });

  it('never runs more than `concurrency` jobs process-wide nor `perRequest` per lane', () => {
    const { scheduler, lane, job } = setup(3, 2, 100);
    const lanes = [lane(1), lane(2), lane(3)];
    for (const l of lanes) for (let i = 0; i < 4; i++) scheduler.submit(l, job(l, `x`));
    expect(scheduler.running).toBe(3);
    expect(scheduler.queued).toBe(9);
    for (const l of lanes) expect(l.running).toBeLessThanOrEqual(2);
  });

  it('sheds when the queue is full, and only then', () => {
    const { scheduler, lane, job } = setup(1, 1, 2);
    const a = lane(1);
    expect(scheduler.submit(a, job(a, 'a1'))).toBe('started');
    expect(scheduler.submit(a, job(a, 'a2'))).toBe('queued');
    expect(scheduler.submit(a, job(a, 'a3'))).toBe('queued');
    expect(scheduler.submit(a, job(a, 'a4'))).toBe('shed');
    expect(scheduler.queued).toBe(2);
  });

  it('gives a freed slot to the oldest request, not to the one that freed it or the last to ask', () => {
    const { scheduler, log, lane, job } = setup(2, 2, 100);
    const old = lane(1);
    const young = lane(2);
    scheduler.submit(old, job(old, 'old1'));
    scheduler.submit(old, job(old, 'old2'));
    scheduler.submit(young, job(young, 'young1'));
    scheduler.submit(old, job(old, 'old3'));
    expect(log).toEqual(['old1', 'old2']);
    scheduler.release(old); // old has a free per-request slot again and is older: it goes first
    expect(log).toEqual(['old1', 'old2', 'old3']);
    scheduler.release(old);
    expect(log).toEqual(['old1', 'old2', 'old3', 'young1']);
  });

  it('serves requests in arrival order even when a younger one queued first', () => {
    const { scheduler, log, lane, job } = setup(1, 4, 100);
    const first = lane(10);
    const blocker = lane(1);
    const older = lane(5);
    scheduler.submit(blocker, job(blocker, 'blocker'));
    scheduler.submit(first, job(first, 'arrived-later'));
    scheduler.submit(older, job(older, 'arrived-earlier'));
    scheduler.release(blocker);
    scheduler.release(older);
    expect(log).toEqual(['blocker', 'arrived-earlier', 'arrived-later']);
  });

  it('drops a cancelled job from the queue so it never starts', () => {
    const { scheduler, lane, job } = setup(1, 1, 10);
    const a = lane(1);
    const b = lane(2);
    scheduler.submit(a, job(a, 'a'));
    const queued = job(b, 'b');
    scheduler.submit(b, queued);
    scheduler.cancel(b, queued);
    expect(scheduler.queued).toBe(0);
    scheduler.release(a);
    expect(queued.started).toBe(false);
    expect(scheduler.running).toBe(0);
  });

  it('resolves idle() once nothing runs or waits', async () => {
    const { scheduler, lane, job } = setup(1, 1, 10);
    const a = lane(1);
    scheduler.submit(a, job(a, 'a1'));
    scheduler.submit(a, job(a, 'a2'));
    let idle = false;
    const waiting = scheduler.idle().then(() => (idle = true));
    scheduler.release(a);
    await Promise.resolve();
    expect(idle).toBe(false);
    scheduler.release(a);
    await waiting;
    expect(idle).toBe(true);
  });

  it('keeps its bounds and accounting under any sequence of submit, cancel and release', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 6 }),
        fc.array(fc.tuple(fc.constantFrom('submit', 'release', 'cancel'), fc.integer({ min: 0, max: 3 })), {
          maxLength: 80,
        }),
        (concurrency, perRequest, maxQueue, ops) => {
          const { scheduler, lane, job } = setup(concurrency, perRequest, maxQueue);
          const lanes = [lane(0), lane(1), lane(2), lane(3)];
          const jobs: TestJob[] = [];
          const released = new Set<TestJob>();
          for (const [op, i] of ops) {
            const l = lanes[i]!;
            if (op === 'submit') {
              const j = job(l, 'j');
              if (scheduler.submit(l, j) !== 'shed') jobs.push(j);
            } else if (op === 'release') {
              const j = jobs.find((x) => x.lane === l && x.started && !released.has(x));
              if (j) {
                released.add(j);
                scheduler.release(l);
              }
            } else {
              const j = jobs.find((x) => x.lane === l && x.queued);
              if (j) scheduler.cancel(l, j);
            }
            const running = jobs.filter((x) => x.started && !released.has(x));
            expect(scheduler.running).toBe(running.length);
            expect(scheduler.running).toBeLessThanOrEqual(concurrency);
            expect(scheduler.queued).toBe(jobs.filter((x) => x.queued).length);
            expect(scheduler.queued).toBeLessThanOrEqual(maxQueue);
            for (const x of lanes) {
              expect(x.running).toBe(running.filter((j) => j.lane === x).length);
              expect(x.running).toBeLessThanOrEqual(perRequest);
            }
            // Work-conserving: a free slot never sits beside an eligible waiting job.
            const eligible = lanes.some((x) => x.waiting > 0 && x.running < perRequest);
            expect(eligible && scheduler.running < concurrency).toBe(false);
          }
        },
      ),
    );
  });

  describe('lending a slot (a task waiting for a worker thread)', () => {
    it('gives a lent slot to the next waiting job, and counts the lender as away until it comes back', async () => {
      const { scheduler, log, lane, job } = setup(1, 4, 10);
      const a = lane(1);
      const b = lane(2);
      scheduler.submit(a, job(a, 'a1'));
      scheduler.submit(b, job(b, 'b1'));
      scheduler.lend(a);
      expect(log).toEqual(['a1', 'b1']);
      expect(scheduler).toMatchObject({ running: 1, queued: 0, away: 1 });
      let idle = false;
      void scheduler.idle().then(() => (idle = true));
      scheduler.release(b);
      await Promise.resolve();
      expect(idle).toBe(false); // a1 is still out on its worker call
      scheduler.returned();
      await Promise.resolve();
      expect(idle).toBe(true);
    });

    it('re-takes a lent slot ahead of its own lane, never overtaking an older request', () => {
      const { scheduler, log, lane, job } = setup(1, 4, 10);
      const old = lane(1);
      const a = lane(2);
      scheduler.submit(a, job(a, 'a1'));
      scheduler.lend(a); // a1 waits for a thread
      scheduler.submit(a, job(a, 'a2')); // takes the lent slot
      scheduler.submit(a, job(a, 'a3'));
      scheduler.submit(old, job(old, 'old1'));
      const back = job(a, 'a1 back');
      scheduler.retake(a, back);
      expect(back.queued).toBe(true);
      scheduler.release(a); // a2 ends: the older request first
      scheduler.release(old);
      scheduler.release(a); // then a1 again, before a3
      expect(log).toEqual(['a1', 'a2', 'old1', 'a1 back', 'a3']);
    });

    it('re-takes even when the queue is full, so running never exceeds concurrency', () => {
      const { scheduler, lane, job } = setup(2, 4, 1);
      const a = lane(1);
      const b = lane(2);
      scheduler.submit(a, job(a, 'a1'));
      scheduler.submit(a, job(a, 'a2'));
      scheduler.lend(a);
      scheduler.submit(b, job(b, 'b1')); // takes the lent slot
      expect(scheduler.submit(b, job(b, 'b2'))).toBe('queued');
      expect(scheduler.submit(b, job(b, 'b3'))).toBe('shed');
      const back = job(a, 'a1 back');
      scheduler.retake(a, back); // not shed: it held a slot already
      expect(back.queued).toBe(true);
      expect(scheduler).toMatchObject({ running: 2, queued: 2, away: 0 });
      scheduler.release(b);
      expect(back.started).toBe(true);
      expect(scheduler.running).toBe(2);
    });

    it('drops a re-take cancelled while it waits, taking nothing', async () => {
      const { scheduler, lane, job } = setup(1, 4, 10);
      const a = lane(1);
      const b = lane(2);
      scheduler.submit(a, job(a, 'a1'));
      scheduler.lend(a);
      scheduler.submit(b, job(b, 'b1'));
      const back = job(a, 'a1 back');
      scheduler.retake(a, back);
      scheduler.cancel(a, back);
      scheduler.release(b);
      expect(back.started).toBe(false);
      expect(scheduler).toMatchObject({ running: 0, queued: 0, away: 0 });
      await expect(scheduler.idle()).resolves.toBeUndefined();
    });

    it('keeps its bounds and accounting under any sequence that also lends, re-takes, returns and cancels re-takes', () => {
      type State = 'queued' | 'running' | 'lent' | 'retaking' | 'done';
      interface Entry {
        lane: Lane;
        state: State;
        job: Job;
        retake?: Job;
      }
      const OPS = ['submit', 'release', 'cancel', 'lend', 'retake', 'return', 'drop-retake'] as const;
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 4 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 0, max: 6 }),
          fc.array(fc.tuple(fc.constantFrom(...OPS), fc.integer({ min: 0, max: 3 })), { maxLength: 100 }),
          (concurrency, perRequest, maxQueue, ops) => {
            const scheduler = new Scheduler(concurrency, perRequest, maxQueue);
            const lanes = [0, 1, 2, 3].map((i) => new Lane(i, i));
            const entries: Entry[] = [];
            const jobOf = (start: () => void): Job => ({
              nextJob: null,
              prevJob: null,
              queued: false,
              start,
            });
            const find = (l: Lane, state: State) => entries.find((e) => e.lane === l && e.state === state);
            for (const [op, i] of ops) {
              const l = lanes[i]!;
              switch (op) {
                case 'submit': {
                  const entry: Entry = {
                    lane: l,
                    state: 'queued',
                    job: jobOf(() => (entry.state = 'running')),
                  };
                  if (scheduler.submit(l, entry.job) !== 'shed') entries.push(entry);
                  break;
                }
                case 'release': {
                  const e = find(l, 'running');
                  if (e) {
                    e.state = 'done';
                    scheduler.release(l);
                  }
                  break;
                }
                case 'cancel': {
                  const e = find(l, 'queued');
                  if (e) {
                    scheduler.cancel(l, e.job);
                    e.state = 'done';
                  }
                  break;
                }
                case 'lend': {
                  const e = find(l, 'running');
                  if (e) {
                    e.state = 'lent';
                    scheduler.lend(l);
                  }
                  break;
                }
                case 'retake': {
                  const e = find(l, 'lent');
                  if (e) {
                    e.state = 'retaking';
                    e.retake = jobOf(() => (e.state = 'running'));
                    scheduler.retake(l, e.retake);
                  }
                  break;
                }
                case 'return': {
                  const e = find(l, 'lent');
                  if (e) {
                    e.state = 'done';
                    scheduler.returned();
                  }
                  break;
                }
                case 'drop-retake': {
                  const e = find(l, 'retaking');
                  if (e) {
                    scheduler.cancel(l, e.retake!);
                    e.state = 'done';
                  }
                  break;
                }
              }
              const count = (state: State, lane?: Lane) =>
                entries.filter((e) => e.state === state && (lane === undefined || e.lane === lane)).length;
              expect(scheduler.running).toBe(count('running'));
              expect(scheduler.running).toBeLessThanOrEqual(concurrency);
              expect(scheduler.away).toBe(count('lent'));
              expect(scheduler.queued).toBe(count('queued') + count('retaking'));
              expect(count('queued')).toBeLessThanOrEqual(maxQueue);
              for (const x of lanes) {
                expect(x.running).toBe(count('running', x));
                expect(x.running).toBeLessThanOrEqual(perRequest);
              }
              const eligible = lanes.some((x) => x.waiting > 0 && x.running < perRequest);
              expect(eligible && scheduler.running < concurrency).toBe(false);
            }
          },
        ),
      );
    });

    it('starts a slotless job at once, counting it nowhere', () => {
      const { scheduler, lane, job } = setup(1, 1, 0);
      const a = lane(1);
      scheduler.submit(a, job(a, 'a1'));
      const free = Object.assign(job(a, 'worker only'), { slotless: true });
      expect(scheduler.submit(a, free)).toBe('started');
      expect(scheduler).toMatchObject({ running: 1, queued: 0, away: 0 });
    });
  });
});
