import { BudgetExceededError, fanout } from 'express-fanout';
import { fakeExchange } from './helpers/fake-request';

/**
 * The requests of one middleware share one deadline timer (lib/deadline.ts), on a mocked clock: however many are
 * in flight, the timers do not grow with them; each still ends at its own deadline; a request whose budget
 * header makes its deadline come out of turn keeps a timer of its own; nothing is left armed after.
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
