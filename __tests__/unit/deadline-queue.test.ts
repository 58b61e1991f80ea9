import { DeadlineQueue, type Due } from '../../lib/deadline';

/**
 * The middleware's one timer for its requests' deadlines (lib/deadline.ts), on jest's clock: entries expire in
 * order, each when due, one timer is armed at a time, and none is left once the queue is empty.
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
