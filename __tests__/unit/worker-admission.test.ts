// Admission of worker calls (lib/workers/pool.ts with lib/admission.ts): a fake clock and fake threads, so
// that every service time, drain rate and deadline is exact and nothing depends on the machine's speed.
import { join } from 'node:path';
import { OverloadedError } from '../../lib/errors';
import { WorkerPool, resolveWorkerOptions } from '../../lib/workers';
import type { ThreadCall, Threads } from '../../lib/workers/workerpool-adapter';
import type { WorkerOptions } from '../../lib/types';

const METHODS = join(__dirname, '..', 'fixtures', 'worker-methods.js');

/** One call handed to a fake thread: the test says when the thread begins it and when it ends. */
interface FakeCall {
  method: string;
  args: readonly unknown[];
  cancelled: boolean;
  begin(): void;
  end(value?: unknown): void;
  fail(error: unknown): void;
}

class FakeThreads implements Threads {
  readonly calls: FakeCall[] = [];
  terminated = false;

  run(method: string, args: readonly unknown[], _transfer: unknown, onBegin?: () => void): ThreadCall {
    let resolve!: (value: unknown) => void;
    let reject!: (error: unknown) => void;
    const result = new Promise<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    let started = false;
    const call: FakeCall = {
      method,
      args,
      cancelled: false,
      begin: () => {
        started = true;
        onBegin?.();
      },
      end: (value) => resolve(value),
      fail: (error) => reject(error),
    };
    this.calls.push(call);
    return {
      result,
      cancel: () => {
        call.cancelled = true;
        reject(new Error('Worker terminated'));
      },
      get started() {
        return started;
      },
    };
  }

  threads(): { total: number; idle: number } {
    return { total: 1, idle: 0 };
  }

  terminate(): Promise<void> {
    this.terminated = true;
    return Promise.resolve();
  }
}

let clock = 0;
let threads: FakeThreads;
const pools: WorkerPool[] = [];

function makePool(options: WorkerOptions = {}, admission = true): WorkerPool {
  const resolved = resolveWorkerOptions({ script: METHODS, maxWorkers: 1, ...options });
  if (resolved === false) throw new Error('unreachable');
  const pool = new WorkerPool(resolved, admission ? { targetMs: 5, intervalMs: 100, lifo: false } : false, {
    now: () => clock,
    startThreads: () => threads,
  });
  pools.push(pool);
  return pool;
}

/** Lets the pool see settled fake calls (their results arrive through promise callbacks). */
const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

/** What a call's promise became, without leaving a rejection unhandled. */
function track<T>(promise: Promise<T>): { outcome: () => 'pending' | 'fulfilled' | unknown } {
  let outcome: unknown = 'pending';
  promise.then(
    () => (outcome = 'fulfilled'),
    (error: unknown) => (outcome = error),
  );
  return { outcome: () => outcome };
}

/** Submits a `block` call due `leftMs` from now on the fake clock. */
function submit(pool: WorkerPool, leftMs: number | undefined, method = 'block', task = 'cpu') {
  return track(
    pool.exec(method, [10], { task, ...(leftMs === undefined ? {} : { deadline: clock + leftMs }) }),
  );
}

/** Runs the oldest unfinished fake call for `ms` of fake time: it begins now and ends `ms` later. */
async function serve(ms: number): Promise<void> {
  const call = threads.calls.find((c) => !c.cancelled && !done.has(c))!;
  done.add(call);
  call.begin();
  clock += ms;
  call.end(ms);
  await flush();
}
const done = new Set<FakeCall>();

beforeEach(() => {
  clock = 1000;
  threads = new FakeThreads();
  done.clear();
});

afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
});

describe('worker admission', () => {
  it('before anything is measured, only maxQueueSize bounds the queue', async () => {
    const pool = makePool({ maxQueueSize: 3 });
    const calls = Array.from({ length: 5 }, () => submit(pool, 50));
    await flush();
    expect(pool.stats()).toMatchObject({ busy: 1, pending: 3, shed: 1 });
    expect(calls.map((c) => c.outcome())).toEqual([
      'pending',
      'pending',
      'pending',
      'pending',
      expect.any(OverloadedError),
    ]);
    expect(String(calls[4]!.outcome())).toContain('the worker queue is full (1/1 threads busy, 3/3 queued)');
  });

  it('judges a first burst queued blind once the first call has ended: what cannot finish is shed at once, not left to time out', async () => {
    const pool = makePool();
    // 10 calls due in 45 ms on one thread; each will take 10 ms: the first four can finish.
    const calls = Array.from({ length: 10 }, () => submit(pool, 45));
    await flush();
    expect(pool.stats()).toMatchObject({ busy: 1, pending: 9, shed: 0 });

    await serve(10);
    // At 10 ms: 35 ms left. Queued call k (0-based) expects to wait (k + 1) * 10 ms, then 10 ms of work.
    const outcomes = calls.map((c) => c.outcome());
    expect(outcomes[0]).toBe('fulfilled');
    expect(outcomes.slice(1, 4)).toEqual(['pending', 'pending', 'pending']);
    for (const outcome of outcomes.slice(4)) {
      expect(outcome).toBeInstanceOf(OverloadedError);
      expect((outcome as OverloadedError).status).toBe(503);
      expect((outcome as OverloadedError).message).toMatch(
        /left the queue: it cannot finish in time, \d+ ms expected wait for a thread, about 10 ms of work, 35 ms left/,
      );
    }
    expect(pool.stats()).toMatchObject({ pending: 2, shed: 6 });

    // The ones kept do finish in time.
    await serve(10);
    await serve(10);
    await serve(10);
    expect(calls.slice(0, 4).map((c) => c.outcome())).toEqual(Array(4).fill('fulfilled'));
    expect(clock - 1000).toBeLessThanOrEqual(45);
    expect(pool.stats()).toMatchObject({ busy: 0, pending: 0, shed: 6 });
  });

  it('sheds a call at once when its expected wait for a thread leaves no time for its work', async () => {
    const pool = makePool();
    const first = submit(pool, 1000);
    const second = submit(pool, 1000);
    await serve(10); // measured: 10 ms per call, one thread
    // One call runs, none waits. A call due in 25 ms would wait ~10 ms and needs 1.25 * 10 ms: it fits.
    const fits = submit(pool, 25);
    await flush();
    expect(fits.outcome()).toBe('pending');
    // Behind it, one more due in 25 ms would wait ~20 ms: shed now, with the numbers.
    const late = submit(pool, 25, 'block', 'late');
    await flush();
    const error = late.outcome() as OverloadedError;
    expect(error).toBeInstanceOf(OverloadedError);
    expect(error.tasks).toEqual(['late']);
    expect(error.headers).toEqual({ 'Retry-After': '1' });
    expect(error.message).toMatch(
      /^Task `late` shed: the expected wait for a worker thread leaves no time for `block` \(about 10 ms of work\) in the 25 ms left/,
    );
    expect(pool.stats()).toMatchObject({ shed: 1, pending: 1 });
    await serve(10);
    await serve(10);
    expect([first.outcome(), second.outcome(), fits.outcome()]).toEqual([
      'fulfilled',
      'fulfilled',
      'fulfilled',
    ]);
  });

  it("drops a queued call whose turn comes with less time left than its method's service time", async () => {
    const pool = makePool();
    submit(pool, 1000);
    await serve(30); // `block` takes 30 ms
    const running = submit(pool, 1000);
    const echo = submit(pool, 1000, 'echo');
    await flush();
    const runningCall = threads.calls.at(-1)!;
    done.add(runningCall);
    runningCall.begin();
    // A `block` call due in 118 ms is admitted (1 running, 1 queued; ~60 ms of wait) ...
    const doomed = submit(pool, 118);
    await flush();
    expect(doomed.outcome()).toBe('pending');
    // ... the running call takes its 30 ms, and when the echo starts, the doomed call still fits ...
    clock += 30;
    runningCall.end(1);
    await flush();
    expect(running.outcome()).toBe('fulfilled');
    expect(doomed.outcome()).toBe('pending');
    // ... but the echo takes 55 ms: 33 ms left when its turn comes, < 30 ms of work and its margin.
    await serve(55);
    expect(echo.outcome()).toBe('fulfilled');
    const error = doomed.outcome() as OverloadedError;
    expect(error).toBeInstanceOf(OverloadedError);
    expect(error.message).toMatch(/left the queue: only 33 ms left when its turn came, about 30 ms of work/);
    // It never reached a thread.
    expect(threads.calls.map((c) => c.method)).toEqual(['block', 'block', 'echo']);
    expect(pool.stats()).toMatchObject({ busy: 0, pending: 0, shed: 1 });
  });

  it('sheds a waiting call that fell behind a slow call when that call ends, not at its deadline', async () => {
    const pool = makePool();
    Array.from({ length: 6 }, () => submit(pool, 1000));
    for (let i = 0; i < 6; i++) await serve(10); // 10 ms a call, measured while calls waited
    submit(pool, 1000); // runs at once
    const next = submit(pool, 1000);
    // Due in 40 ms behind two 10 ms calls: admitted.
    const late = submit(pool, 40, 'block', 'late');
    await flush();
    expect(late.outcome()).toBe('pending');
    // The running call takes 25 ms (the drain rate does not fall by a quarter): 15 ms left for a call that
    // still waits for `next` (~10 ms) and needs ~11 ms. Shed now, not when `next` ends after its deadline.
    await serve(25);
    expect(next.outcome()).toBe('pending');
    const error = late.outcome() as OverloadedError;
    expect(error).toBeInstanceOf(OverloadedError);
    expect(error.message).toMatch(/left the queue: it cannot finish in time, .* 15 ms left/);
    await serve(10);
    expect(next.outcome()).toBe('fulfilled');
  });

  it("judges a method by its own service time, not by other methods' (a quick one still starts late in the budget)", async () => {
    const pool = makePool();
    submit(pool, 1000, 'echo');
    await serve(1); // `echo` takes 1 ms
    // Five 40 ms calls, then an echo due when they are done, plus 5 ms.
    const blocks = Array.from({ length: 5 }, () => submit(pool, 1000));
    const echo = submit(pool, 205, 'echo');
    await flush();
    for (let i = 0; i < 5; i++) await serve(40);
    // 5 ms left at its turn: less than the average of all calls (~10 ms), more than an echo's 1 ms.
    expect(blocks.map((c) => c.outcome())).toEqual(Array(5).fill('fulfilled'));
    expect(echo.outcome()).toBe('pending');
    expect(threads.calls.at(-1)!.method).toBe('echo');
    await serve(1);
    expect(echo.outcome()).toBe('fulfilled');
    expect(pool.stats().shed).toBe(0);
  });

  it("measures service time from when the thread begins the call, not from a thread's start-up", async () => {
    const pool = makePool();
    const first = submit(pool, 1000);
    await flush();
    clock += 120; // the thread starts
    await serve(10);
    expect(first.outcome()).toBe('fulfilled');
    // Measured 10 ms, not 130: a call with 40 ms left behind one running call is admitted.
    submit(pool, 1000);
    const next = submit(pool, 40);
    await flush();
    expect(next.outcome()).toBe('pending');
    expect(pool.stats().shed).toBe(0);
  });

  it('caps a standing queue at intervalMs (CoDel): a call that would wait longer is shed even with budget to spare', async () => {
    const pool = makePool();
    submit(pool, 10_000);
    await serve(10);
    // Keep 30 calls waiting, each served after > 5 ms in the queue, for more than 100 ms.
    const kept = Array.from({ length: 30 }, () => submit(pool, 10_000));
    for (let i = 0; i < 15; i++) await serve(10);
    expect(kept.slice(0, 15).map((c) => c.outcome())).toEqual(Array(15).fill('fulfilled'));
    // 15 still queued: ~160 ms of wait, well inside 10 s, but over the 100 ms a standing queue may hold.
    const capped = submit(pool, 10_000);
    await flush();
    expect(capped.outcome()).toBeInstanceOf(OverloadedError);
    expect(pool.stats().shed).toBe(1);
    while (threads.calls.some((c) => !done.has(c))) await serve(10);
  });

  it('never judges a call without a deadline, nor any call with admission off', async () => {
    for (const admission of [true, false]) {
      threads = new FakeThreads();
      done.clear();
      const pool = makePool({}, admission);
      submit(pool, undefined);
      await serve(10);
      const calls = [
        submit(pool, undefined),
        ...Array.from({ length: 5 }, () => submit(pool, admission ? undefined : 15)),
      ];
      await flush();
      await serve(10);
      expect(pool.stats()).toMatchObject({ shed: 0, pending: 4 });
      while (threads.calls.some((c) => !done.has(c))) await serve(10);
      expect(calls.map((c) => c.outcome())).toEqual(Array(6).fill('fulfilled'));
    }
  });

  it('takes no service sample from a failed call', async () => {
    const pool = makePool();
    const failing = submit(pool, 1000);
    await flush();
    threads.calls[0]!.begin();
    clock += 500;
    threads.calls[0]!.fail(new Error('boom'));
    await flush();
    expect(failing.outcome()).toBeInstanceOf(Error);
    // Had 500 ms been a sample, a call due in 100 ms behind a running one would be shed.
    submit(pool, 1000);
    const next = submit(pool, 100);
    await flush();
    expect(next.outcome()).toBe('pending');
    expect(pool.stats().shed).toBe(0);
  });
});

describe('worker admission at 3x overload (simulated: fake clock, one thread, 10 ms calls)', () => {
  interface Sent {
    at: number;
    deadline: number;
    controller: AbortController;
    outcome: 'pending' | 'ok' | 'shed' | 'timeout';
    settledAt: number;
  }

  /**
   * Open-loop arrivals at `factor` times what the thread can serve, each call due `budgetMs` after it arrives;
   * its caller gives up at that deadline (the request's signal aborts). Returns what each call became and when.
   */
  async function simulate(factor: number, budgetMs: number, seconds: number, admission: boolean) {
    const serviceMs = 10;
    const pool = makePool({}, admission);
    // The fake thread begins each call it is handed at once and ends it `serviceMs` later.
    const thread: { running: FakeCall | null; endsAt: number } = { running: null, endsAt: Infinity };
    const run = threads.run.bind(threads);
    threads.run = (...args) => {
      const handed = run(...args);
      thread.running = threads.calls.at(-1)!;
      thread.running.begin();
      thread.endsAt = clock + serviceMs;
      return handed;
    };

    const sent: Sent[] = [];
    const end = clock + seconds * 1000;
    const gap = serviceMs / factor;
    let nextArrival = clock;
    for (;;) {
      const pending = sent.filter((s) => s.outcome === 'pending');
      const arrival = nextArrival < end ? nextArrival : Infinity;
      const deadline = Math.min(...pending.map((s) => s.deadline));
      clock = Math.min(arrival, thread.endsAt, deadline);
      if (clock === Infinity) break;
      if (clock === thread.endsAt) {
        const call = thread.running!;
        thread.running = null;
        thread.endsAt = Infinity;
        call.end(serviceMs);
      } else if (clock === arrival) {
        nextArrival += gap;
        const s: Sent = {
          at: clock,
          deadline: clock + budgetMs,
          controller: new AbortController(),
          outcome: 'pending',
          settledAt: Number.NaN,
        };
        sent.push(s);
        pool
          .exec('block', [serviceMs], { task: 'cpu', deadline: s.deadline, signal: s.controller.signal })
          .then(
            () => {
              s.outcome = 'ok';
              s.settledAt = clock;
            },
            (error: unknown) => {
              s.outcome = error instanceof OverloadedError ? 'shed' : 'timeout';
              s.settledAt = clock;
            },
          );
      } else {
        for (const s of pending) if (s.deadline <= clock) s.controller.abort(new Error('deadline'));
      }
      await flush();
    }
    return { sent, capacity: (seconds * 1000) / serviceMs, pool };
  }

  it('answers >= 0.8x of the thread capacity in time, sheds the rest at once or at its turn, and lets no call reach its deadline', async () => {
    const { sent, capacity, pool } = await simulate(3, 250, 3, true);
    const ok = sent.filter((s) => s.outcome === 'ok');
    const shed = sent.filter((s) => s.outcome === 'shed');
    expect(ok.length / capacity).toBeGreaterThanOrEqual(0.8);
    expect(sent.filter((s) => s.outcome === 'timeout')).toEqual([]);
    for (const s of [...ok, ...shed]) expect(s.settledAt).toBeLessThan(s.deadline);
    // Most sheds cost nothing: refused when submitted.
    expect(shed.filter((s) => s.settledAt === s.at).length / shed.length).toBeGreaterThan(0.9);
    expect(pool.stats().shed).toBe(shed.length);
  });

  it('without admission the same load gets almost nothing done in time: calls wait in the queue past their deadline', async () => {
    const { sent, capacity } = await simulate(3, 250, 3, false);
    const ok = sent.filter((s) => s.outcome === 'ok');
    expect(ok.length / capacity).toBeLessThan(0.2);
    expect(sent.filter((s) => s.outcome === 'timeout').length).toBeGreaterThan(sent.length / 2);
  });
});
