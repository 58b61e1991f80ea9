import {
  BudgetExceededError,
  fanout,
  type FanoutOptions,
  type TaskEvent,
  type TaskStatus,
} from 'express-fanout';
import { fakeExchange } from './helpers/fake-request';

/**
 * The deadline racing a task's settlement, on a mocked clock (as resilience4j tests its TimeLimiter): the
 * deadline fires a few ms before, at the same ms as, or a few ms after the task settles, and every time
 * exactly one terminal outcome is recorded, the call settles once and consistently with it, and no timer or
 * slot is left. No HTTP: the middleware runs on a minimal request and response.
 */

// The library reads `performance.now()` from `node:perf_hooks`: route it to the global one, which jest fakes.
jest.mock('node:perf_hooks', () => ({
  ...jest.requireActual<typeof import('node:perf_hooks')>('node:perf_hooks'),
  get performance() {
    return globalThis.performance;
  },
}));

const B = 100;
const GRACE = 50;

/** A request through a fresh middleware, with a response that is an EventEmitter (see fakeExchange). */
function fakeRequest(options: FanoutOptions = {}) {
  const events: TaskEvent[] = [];
  const fo = fanout({
    budgetMs: B,
    graceMs: GRACE,
    serverTiming: false,
    onTask: (e) => events.push(e),
    ...options,
  });
  const { scope, disconnect } = fakeExchange(fo);
  return { fo, scope, events, disconnect };
}

/** Records how a call's promise settled, and how many times its handlers ran. */
function track(promise: Promise<unknown>) {
  const seen: { settled: number; value?: unknown; error?: unknown } = { settled: 0 };
  promise.then(
    (value) => {
      seen.settled++;
      seen.value = value;
    },
    (error: unknown) => {
      seen.settled++;
      seen.error = error;
    },
  );
  return seen;
}

/** A task that settles `at` ms after it starts, on the (fake) clock, ignoring its signal. */
const settlesAt = (at: number, how: 'resolve' | 'reject') => (): Promise<string> =>
  new Promise((resolve, reject) =>
    setTimeout(() => (how === 'resolve' ? resolve('v') : reject(new Error('late failure'))), at),
  );

async function advance(ms: number): Promise<void> {
  await jest.advanceTimersByTimeAsync(ms);
}

beforeEach(() => {
  jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask', 'setImmediate'] });
});

afterEach(() => {
  jest.useRealTimers();
});

const offsets = [-3, -1, 0, 1, 3];
const kinds = ['resolve', 'reject'] as const;
const modes = ['all', 'all with fallback', 'settle'] as const;
const raceCells = modes.flatMap((mode) =>
  kinds.flatMap((how) => offsets.map((offset) => [mode, how, offset] as const)),
);

describe('the request deadline racing a task', () => {
  it.each(raceCells)(
    '%s: a task that %ss %i ms from the deadline has exactly one outcome',
    async (mode, how, offset) => {
      const { fo, scope, events } = fakeRequest();
      const run = settlesAt(B + offset, how);
      const call =
        mode === 'settle'
          ? scope.settle({ t: run })
          : scope.all({ t: mode === 'all' ? run : { run, fallback: 'fb' } });
      const seen = track(call);

      // Up to 1 ms before whichever comes first: nothing yet.
      await advance(Math.min(B, B + offset) - 1);
      expect(events).toHaveLength(0);
      expect(seen.settled).toBe(0);
      await advance(Math.abs(offset) + 2);

      // One outcome, whichever came first; the call settled once, consistently with it.
      expect(events).toHaveLength(1);
      const status: TaskStatus = events[0]!.status;
      const settledFirst: TaskStatus = how === 'resolve' ? 'fulfilled' : 'rejected';
      if (offset < 0) expect(status).toBe(settledFirst);
      else if (offset > 0) expect(status).toBe('timeout');
      else expect([settledFirst, 'timeout']).toContain(status);
      expect(seen.settled).toBe(1);
      if (mode === 'settle') {
        expect(seen.value).toEqual({ t: expect.objectContaining({ status }) });
      } else if (mode === 'all with fallback') {
        expect(seen.value).toEqual({ t: status === 'fulfilled' ? 'v' : 'fb' });
      } else if (status === 'fulfilled') {
        expect(seen.value).toEqual({ t: 'v' });
      } else {
        expect((seen.error as { status?: number }).status).toBe(status === 'timeout' ? 504 : 502);
        if (status === 'timeout') expect(seen.error).toBeInstanceOf(BudgetExceededError);
      }

      // Past the grace period: nothing more happens, the slot is free and no timer is left.
      await advance(GRACE + 10);
      expect(events).toHaveLength(1);
      expect(seen.settled).toBe(1);
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0, abandoned: 0 });
      expect(jest.getTimerCount()).toBe(0);
    },
  );
});

describe('a task timeout racing the task', () => {
  it.each(offsets.flatMap((offset) => kinds.map((how) => [how, offset] as const)))(
    'a task that %ss %i ms from its timeoutMs has exactly one outcome',
    async (how, offset) => {
      const T = 40;
      const { fo, scope, events } = fakeRequest();
      const seen = track(scope.settle({ t: { run: settlesAt(T + offset, how), timeoutMs: T } }));
      await advance(T + Math.abs(offset) + 1);
      expect(events).toHaveLength(1);
      const status = events[0]!.status;
      const settledFirst: TaskStatus = how === 'resolve' ? 'fulfilled' : 'rejected';
      if (offset < 0) expect(status).toBe(settledFirst);
      else if (offset > 0) expect(status).toBe('timeout');
      else expect([settledFirst, 'timeout']).toContain(status);
      await advance(B);
      expect(seen.settled).toBe(1);
      expect(events).toHaveLength(1);
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0 });
      expect(jest.getTimerCount()).toBe(0);
    },
  );
});

describe('a call budget racing the task', () => {
  it.each(offsets)(
    'a task that resolves %i ms from the call budget has exactly one outcome',
    async (offset) => {
      const C = 30;
      const { fo, scope, events } = fakeRequest();
      const seen = track(scope.all({ t: settlesAt(C + offset, 'resolve') }, { budgetMs: C }));
      await advance(C + Math.abs(offset) + 1);
      expect(events).toHaveLength(1);
      expect(seen.settled).toBe(1);
      const status = events[0]!.status;
      if (offset < 0) expect(status).toBe('fulfilled');
      else if (offset > 0) expect(status).toBe('timeout');
      expect(seen.value === undefined).toBe(status !== 'fulfilled');
      await advance(B + GRACE);
      expect(events).toHaveLength(1);
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0 });
      expect(jest.getTimerCount()).toBe(0);
    },
  );
});

describe('the grace period racing a late settlement', () => {
  it.each(offsets)(
    'a task that ignores its signal and settles %i ms from the end of graceMs frees its slot once',
    async (offset) => {
      const { fo, scope, events } = fakeRequest({ concurrency: 1 });
      const seen = track(scope.settle({ t: settlesAt(B + GRACE + offset, 'resolve') }));
      await advance(B);
      expect(events.map((e) => e.status)).toEqual(['timeout']);
      expect(fo.stats().running).toBe(1);
      await advance(GRACE + Math.abs(offset) + 1);
      const stats = fo.stats();
      expect(stats.running).toBe(0);
      if (offset < 0) expect(stats.abandoned).toBe(0);
      else if (offset > 0) expect(stats.abandoned).toBe(1);
      expect(seen.settled).toBe(1);
      expect(events).toHaveLength(1);
      expect(jest.getTimerCount()).toBe(0);
    },
  );
});

describe('a task that settles from inside the abort', () => {
  it.each(kinds)(
    'a task that %ss in its abort listener, when the deadline fires, times out once',
    async (how) => {
      const { fo, scope, events } = fakeRequest();
      const seen = track(
        scope.settle({
          t: ({ signal }) =>
            new Promise((resolve, reject) =>
              signal.addEventListener('abort', () =>
                how === 'resolve' ? resolve('v') : reject(new Error('x')),
              ),
            ),
        }),
      );
      await advance(B);
      expect(events.map((e) => e.status)).toEqual(['timeout']);
      await advance(GRACE + 1);
      expect(seen.settled).toBe(1);
      expect(events).toHaveLength(1);
      expect(fo.stats()).toMatchObject({ running: 0, queued: 0, abandoned: 0 });
      expect(jest.getTimerCount()).toBe(0);
    },
  );

  it('a client that leaves at the same ms as the deadline gives one outcome per task', async () => {
    const { fo, scope, events, disconnect } = fakeRequest();
    const seen = track(scope.settle({ a: settlesAt(B + 10, 'resolve'), b: settlesAt(B + 10, 'reject') }));
    setTimeout(disconnect, B);
    await advance(B + 20 + GRACE);
    expect(events.map((e) => e.name).sort()).toEqual(['a', 'b']);
    expect(new Set(events.map((e) => e.status)).size).toBe(1);
    expect(['timeout', 'aborted']).toContain(events[0]!.status);
    expect(seen.settled).toBe(1);
    expect(fo.stats()).toMatchObject({ running: 0, queued: 0 });
    expect(jest.getTimerCount()).toBe(0);
  });
});
