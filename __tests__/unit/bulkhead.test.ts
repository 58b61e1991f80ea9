import fc from 'fast-check';
import { parseTasks } from '../../lib/task-def';
import { ADAPTIVE_DEFAULTS } from '../../lib/adaptive-limit';
import { ADMISSION_DEFAULTS } from '../../lib/admission';
import { Lane, OVERFLOW_DEPENDENCY, Scheduler } from '../../lib/scheduler';
import { TestJob } from './helpers/test-job';

/** A scheduler with a bulkhead per dependency, each limited to `perDependency` (a fixed adaptive range). */
function setup(o: { ceiling: number; perDependency: number; perRequest: number; maxQueue?: number }) {
  const n = o.perDependency;
  const scheduler = new Scheduler(o.ceiling, o.perRequest, o.maxQueue ?? 100, {
    partition: { adaptive: { ...ADAPTIVE_DEFAULTS, min: n, max: n, initial: n }, admission: false },
    now: () => 0,
  });
  const log: string[] = [];
  let id = 0;
  const lane = (arrival: number) => new Lane(arrival, id++);
  const job = (l: Lane, dependency: string, label: string) =>
    new TestJob(l, label, log, scheduler.bulkhead(dependency));
  return { scheduler, log, lane, job };
}

describe('Scheduler with a bulkhead per dependency', () => {
  it('lets a healthy dependency start while a saturated one queues (isolation)', () => {
    const { scheduler, lane, job } = setup({ ceiling: 100, perDependency: 2, perRequest: 100 });
    const a = lane(1);
    const slow = [job(a, 'slow', 's1'), job(a, 'slow', 's2'), job(a, 'slow', 's3')];
    for (const j of slow) scheduler.submit(a, j);
    expect(slow.map((j) => j.started)).toEqual([true, true, false]);
    const b = lane(2);
    const fast = job(b, 'fast', 'f1');
    expect(scheduler.submit(b, fast)).toBe('started');
    expect(scheduler.dependencies()).toEqual({
      slow: { limit: 2, running: 2, queued: 1, shed: 0 },
      fast: { limit: 2, running: 1, queued: 0, shed: 0 },
    });
    expect(scheduler.running).toBe(3);
    expect(scheduler.queued).toBe(1);
    expect(scheduler.limit).toBe(4);
  });

  it('serves requests in arrival order within a dependency', () => {
    const { scheduler, log, lane, job } = setup({ ceiling: 100, perDependency: 1, perRequest: 100 });
    const first = lane(1);
    const second = lane(2);
    const third = lane(3);
    const running = job(first, 'db', 'first-1');
    scheduler.submit(first, running);
    scheduler.submit(third, job(third, 'db', 'third'));
    scheduler.submit(second, job(second, 'db', 'second'));
    scheduler.submit(first, job(first, 'db', 'first-2'));
    scheduler.release(first, running);
    const next = log.at(-1);
    expect(next).toBe('first-2');
  });

  it('gives a slot freed under the ceiling to the dependency whose oldest waiting request arrived first', () => {
    const { scheduler, log, lane, job } = setup({ ceiling: 2, perDependency: 5, perRequest: 100 });
    const r1 = lane(1);
    const holdA = job(r1, 'a', 'a-running');
    const holdB = job(r1, 'b', 'b-running');
    scheduler.submit(r1, holdA);
    scheduler.submit(r1, holdB);
    const late = lane(5);
    const early = lane(3);
    scheduler.submit(late, job(late, 'a', 'a-late'));
    scheduler.submit(early, job(early, 'b', 'b-early'));
    expect(scheduler.queued).toBe(2);
    // A slot of `a` frees; the ceiling is what they waited for: the oldest request (b's) gets it.
    scheduler.release(r1, holdA);
    expect(log.at(-1)).toBe('b-early');
    scheduler.release(r1, holdB);
    expect(log.at(-1)).toBe('a-late');
  });

  it('counts one request against `perRequest` across its dependencies', () => {
    const { scheduler, log, lane, job } = setup({ ceiling: 100, perDependency: 10, perRequest: 2 });
    const r = lane(1);
    const a = job(r, 'a', 'a');
    scheduler.submit(r, a);
    scheduler.submit(r, job(r, 'b', 'b'));
    expect(scheduler.submit(r, job(r, 'c', 'c'))).toBe('queued');
    // Another request's task of `c` is not held up by the first request's cap.
    const other = lane(2);
    expect(scheduler.submit(other, job(other, 'c', 'c-other'))).toBe('started');
    scheduler.release(r, a);
    expect(log).toEqual(['a', 'b', 'c-other', 'c']);
    expect(r.running).toBe(2);
  });

  it("lets a dependency that stopped answering fill at most half of `maxQueue`, never the others' share", () => {
    const { scheduler, lane, job } = setup({ ceiling: 100, perDependency: 1, perRequest: 100, maxQueue: 4 });
    const r = lane(1);
    scheduler.submit(r, job(r, 'stuck', 'running'));
    expect(scheduler.submit(r, job(r, 'stuck', 'q1'))).toBe('queued');
    expect(scheduler.submit(r, job(r, 'stuck', 'q2'))).toBe('queued');
    expect(scheduler.submit(r, job(r, 'stuck', 'q3'))).toBe('shed');
    expect(scheduler.shedDetail()).toBe(
      'no free slot and the queue is full (dependency `stuck`: 1/1 running, 2/2 queued; all: 1/1 running, 2/4 queued)',
    );
    scheduler.submit(r, job(r, 'other', 'o1'));
    expect(scheduler.submit(r, job(r, 'other', 'o2'))).toBe('queued');
  });

  it('tracks at most `maxDependencies`; later names share one overflow bulkhead', () => {
    const scheduler = new Scheduler(100, 10, 10, {
      partition: { adaptive: ADAPTIVE_DEFAULTS, admission: ADMISSION_DEFAULTS, maxDependencies: 2 },
    });
    const a = scheduler.bulkhead('a');
    expect(scheduler.bulkhead('a')).toBe(a);
    scheduler.bulkhead('b');
    const c = scheduler.bulkhead('c');
    expect(scheduler.bulkhead('d')).toBe(c);
    expect(Object.keys(scheduler.dependencies())).toEqual(['a', 'b', OVERFLOW_DEPENDENCY]);
  });

  it('reports a dependency named `__proto__` as an own key, without touching any prototype', () => {
    const scheduler = new Scheduler(100, 10, 10, {
      partition: { adaptive: ADAPTIVE_DEFAULTS, admission: false },
    });
    scheduler.bulkhead('__proto__');
    const deps = scheduler.dependencies();
    expect(Object.prototype.hasOwnProperty.call(deps, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(deps)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).limit).toBeUndefined();
  });

  it('keeps one limit for every job without partitioning (a fixed concurrency)', () => {
    const scheduler = new Scheduler(3, 10, 10);
    expect(scheduler.bulkhead('a')).toBe(scheduler.bulkhead('b'));
    expect(scheduler.dependencies()).toEqual({});
    expect(scheduler.limit).toBe(3);
  });

  it('never exceeds the ceiling, a dependency limit or perRequest, and never strands a job (random ops)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            op: fc.constantFrom('submit', 'release', 'cancel'),
            request: fc.integer({ min: 0, max: 4 }),
            dependency: fc.constantFrom('a', 'b', 'c'),
            pick: fc.nat(),
          }),
          { maxLength: 80 },
        ),
        (ops) => {
          const { scheduler, lane, job } = setup({ ceiling: 4, perDependency: 2, perRequest: 2 });
          const lanes = Array.from({ length: 5 }, (_, i) => lane(i));
          const running: TestJob[] = [];
          const waiting: TestJob[] = [];
          for (const o of ops) {
            if (o.op === 'submit') {
              const j = job(lanes[o.request]!, o.dependency, 'x');
              if (scheduler.submit(j.lane, j) !== 'shed') (j.started ? running : waiting).push(j);
            } else if (o.op === 'release' && running.length > 0) {
              const [j] = running.splice(o.pick % running.length, 1);
              scheduler.release(j!.lane, j);
            } else if (o.op === 'cancel' && waiting.length > 0) {
              const [j] = waiting.splice(o.pick % waiting.length, 1);
              scheduler.cancel(j!.lane, j!);
            }
            for (let i = waiting.length - 1; i >= 0; i--) {
              if (waiting[i]!.started) running.push(...waiting.splice(i, 1));
            }
            expect(scheduler.running).toBe(running.length);
            expect(scheduler.queued).toBe(waiting.length);
            expect(scheduler.running).toBeLessThanOrEqual(4);
            for (const l of lanes) expect(l.running).toBeLessThanOrEqual(2);
            for (const d of Object.values(scheduler.dependencies())) expect(d.running).toBeLessThanOrEqual(2);
            // Work conservation: nobody waits for a slot that is free everywhere it needs one.
            for (const w of waiting) {
              const free =
                scheduler.running < 4 && w.bulkhead!.running < w.bulkhead!.limit && w.lane.running < 2;
              expect(free).toBe(false);
            }
          }
        },
      ),
    );
  });
});

describe('the `dependency` task option', () => {
  it('names the bulkhead; defaults to none (the task name is used)', () => {
    const [a, b] = parseTasks({ a: { run: () => 1, dependency: 'inventory' }, b: () => 2 });
    expect(a!.dependency).toBe('inventory');
    expect(b!.dependency).toBeUndefined();
  });

  it.each([
    ['', '``'],
    [42, '`42` (number)'],
    ['x'.repeat(129), `\`${'x'.repeat(129)}\``],
  ])('rejects %j with a message naming what is wrong', (value, shown) => {
    expect(() => parseTasks({ t: { run: () => 1, dependency: value } })).toThrow(
      `Expected \`dependency\` to be a non-empty string of at most 128 characters, got ${shown}`,
    );
  });

  it('accepts 128 characters', () => {
    expect(parseTasks({ t: { run: () => 1, dependency: 'x'.repeat(128) } })[0]!.dependency).toHaveLength(128);
  });
});
