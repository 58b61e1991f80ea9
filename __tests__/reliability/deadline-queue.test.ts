import { BudgetExceededError, fanout } from 'express-fanout';
import { DeadlineQueue, type Due } from '../../lib/deadline';
import { fakeExchange } from './helpers/fake-request';

/**
 * The requests of one middleware share one deadline timer (lib/deadline.ts), on a mocked clock. The queue alone:
 * entries expire in order, each when due, one timer is armed at a time, and none is left once it is empty.
 * Through the middleware: however many requests are in flight, the timers do not grow with them; each still ends
 * at its own deadline; a request whose budget header makes its deadline come out of turn keeps a timer of its
 * own; nothing is left armed after.
 */

// The library reads `performance.now()` from `node:perf_hooks`: route it to the global one, which jest fakes.
jest.mock('node:perf_hooks', () => ({
  ...jest.requireActual<typeof import('node:perf_hooks')>('node:perf_hooks'),
  get performance() {
    return globalThis.performance;
  },
}));

beforeEach(() => {
  jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask', 'setImmediate'] });
});

afterEach(() => {
  jest.useRealTimers();
});

const never = (): Promise<never> => new Promise<never>(() => {});

/** Starts a call that never settles on its own; records when and how it ended, on the fake clock. */
function pending(fo: ReturnType<typeof fanout>, headers: Record<string, string> = {}) {
  const { scope } = fakeExchange(fo, headers);
  const seen: { at: number; error: unknown } = { at: Number.NaN, error: undefined };
  const start = performance.now();
  scope.all({ slow: never }).catch((error: unknown) => {
    seen.at = performance.now() - start;
    seen.error = error;
  });
  return seen;
}

describe('one deadline timer for the requests of a middleware', () => {
  it('keeps the timers flat as requests pile up, and still ends each at its own deadline', async () => {
    const fo = fanout({ budgetMs: 200, serverTiming: false, graceMs: 0, eventLoop: false });
    const first = pending(fo);
    const withOne = jest.getTimerCount();
    const rest: ReturnType<typeof pending>[] = [];
    for (let i = 0; i < 20; i++) {
      await jest.advanceTimersByTimeAsync(5);
      rest.push(pending(fo));
    }
    expect(jest.getTimerCount()).toBe(withOne);

    await jest.advanceTimersByTimeAsync(400);
    for (const seen of [first, ...rest]) {
      expect(seen.error).toBeInstanceOf(BudgetExceededError);
      expect(seen.at).toBe(200);
    }
    await fo.close();
    expect(jest.getTimerCount()).toBe(0);
  });

  it('gives a request whose budget header ends it out of turn a timer of its own, on time', async () => {
    const fo = fanout({ budgetMs: 500, serverTiming: false, graceMs: 0, eventLoop: false });
    const long = pending(fo);
    const withOne = jest.getTimerCount();
    const short = pending(fo, { 'x-request-budget-ms': '50' });
    expect(jest.getTimerCount()).toBe(withOne + 1);

    await jest.advanceTimersByTimeAsync(50);
    expect(short.error).toBeInstanceOf(BudgetExceededError);
    expect(short.at).toBe(50);
    expect(long.error).toBeUndefined();
    await jest.advanceTimersByTimeAsync(450);
    expect(long.at).toBe(500);
    await fo.close();
    expect(jest.getTimerCount()).toBe(0);
  });
});

/** An entry due `inMs` from now, which records when it expired (and whether it was still queued then). */
function entry(name: string, inMs: number, log: string[]): Due & { expiredAt: number } {
  const due = {
    deadlineAt: performance.now() + inMs,
    nextDue: null,
    prevDue: null,
    queuedDue: false,
    expiredAt: Number.NaN,
    expire() {
      log.push(`${name}${due.queuedDue ? ' (still queued)' : ''}`);
      due.expiredAt = performance.now();
    },
  };
  return due;
}

describe('DeadlineQueue', () => {
  it('expires its entries in order, each when it is due, with one timer armed at a time', () => {
    const queue = new DeadlineQueue();
    const log: string[] = [];
    const start = performance.now();
    const a = entry('a', 100, log);
    const b = entry('b', 100, log);
    const c = entry('c', 150, log);
    for (const due of [a, b, c]) expect(queue.add(due)).toBe(true);
    expect(jest.getTimerCount()).toBe(1);

    jest.advanceTimersByTime(99);
    expect(log).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(log).toEqual(['a', 'b']);
    expect(a.expiredAt - start).toBe(100);
    // Armed again, for the oldest entry left.
    expect(jest.getTimerCount()).toBe(1);

    jest.advanceTimersByTime(50);
    expect(log).toEqual(['a', 'b', 'c']);
    expect(c.expiredAt - start).toBe(150);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('does not expire an entry that left; the timer stays armed while others are in, and goes with the last', () => {
    const queue = new DeadlineQueue();
    const log: string[] = [];
    const a = entry('a', 100, log);
    const b = entry('b', 300, log);
    queue.add(a);
    queue.add(b);
    queue.remove(a);
    expect(a.queuedDue).toBe(false);
    expect(jest.getTimerCount()).toBe(1);

    // The timer armed for `a` fires, finds nothing due, and re-arms for `b`.
    jest.advanceTimersByTime(100);
    expect(log).toEqual([]);
    expect(jest.getTimerCount()).toBe(1);

    queue.remove(b);
    expect(jest.getTimerCount()).toBe(0);
    jest.advanceTimersByTime(1000);
    expect(log).toEqual([]);
  });

  it('refuses a deadline earlier than the last one added, which its owner then times itself', () => {
    const queue = new DeadlineQueue();
    const log: string[] = [];
    const late = entry('late', 500, log);
    const early = entry('early', 100, log);
    expect(queue.add(late)).toBe(true);
    expect(queue.add(early)).toBe(false);
    expect(early.queuedDue).toBe(false);
    // The same deadline as the last one is in turn.
    expect(queue.add(entry('same', 500, log))).toBe(true);
    jest.advanceTimersByTime(500);
    expect(log).toEqual(['late', 'same']);
  });

  it('times an entry added to an emptied queue by its own deadline, not by the one armed before', () => {
    const queue = new DeadlineQueue();
    const log: string[] = [];
    const long = entry('long', 1000, log);
    queue.add(long);
    queue.remove(long);
    const short = entry('short', 50, log);
    queue.add(short);
    jest.advanceTimersByTime(50);
    expect(log).toEqual(['short']);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('keeps order when an entry expiring ends others (they leave the queue during the sweep)', () => {
    const queue = new DeadlineQueue();
    const log: string[] = [];
    const b = entry('b', 100, log);
    const c = entry('c', 200, log);
    const a = { ...entry('a', 100, log), expire: () => (log.push('a'), queue.remove(c)) };
    queue.add(a);
    queue.add(b);
    queue.add(c);
    jest.advanceTimersByTime(1000);
    expect(log).toEqual(['a', 'b']);
    expect(jest.getTimerCount()).toBe(0);
  });
});
