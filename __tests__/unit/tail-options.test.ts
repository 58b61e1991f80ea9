import { fanout } from 'express-fanout';
import { parseTasks } from '../../lib/task-def';

const run = () => 1;
const parse = (spec: Record<string, unknown>) => parseTasks({ db: { run, ...spec } })[0]!;

describe('task options retries, attemptTimeoutMs, hedgeMs, hedges, key, skipWhenLate', () => {
  it('takes a number or an object for retries, with the 10 ms backoff by default', () => {
    expect(parse({ retries: 2 }).retries).toEqual({ max: 2, backoffMs: 10, retryOn: undefined });
    const retryOn = () => true;
    expect(parse({ retries: { max: 1, backoffMs: 0, retryOn } }).retries).toEqual({
      max: 1,
      backoffMs: 0,
      retryOn,
    });
    expect(parse({ retries: 0 }).retries).toBeUndefined();
  });

  it('says what it expected and what it got, naming the task', () => {
    expect(() => parse({ retries: -1 })).toThrow(
      'Task `db`: Expected `retries` to be an integer from 0 to 100, got `-1` (number)',
    );
    expect(() => parse({ retries: 'twice' })).toThrow(
      'Task `db`: Expected `retries` to be an integer from 0 to 100 or `{ max, backoffMs?, retryOn? }`, got `twice` (string)',
    );
    expect(() => parse({ retries: { max: 1, backofMs: 5 } })).toThrow(
      'Task `db`: Unknown option `retries.backofMs`. Did you mean `retries.backoffMs`?',
    );
    expect(() => parse({ retries: { max: 1, retryOn: 'yes' } })).toThrow(
      'Task `db`: Expected `retries.retryOn` to be a function, got `yes` (string)',
    );
    expect(() => parse({ attemptTimeoutMs: 0 })).toThrow(
      'Task `db`: Expected `attemptTimeoutMs` to be an integer from 1 to 2147483647, got `0` (number)',
    );
    expect(() => parse({ hedgeMs: 'p50' })).toThrow(
      "Task `db`: Expected `hedgeMs` to be an integer from 1 to 2147483647 or one of `'p90'`, `'p95'`, `'p99'`, got `p50` (string)",
    );
    expect(() => parse({ hedges: 11 })).toThrow('Task `db`: Expected `hedges` to be an integer from 1 to 10');
    expect(() => parse({ key: 42 })).toThrow(
      'Task `db`: Expected `key` to be a non-empty string, got `42` (number)',
    );
    expect(() => parse({ skipWhenLate: 'no' })).toThrow(
      'Task `db`: Expected `skipWhenLate` to be a boolean, got `no` (string)',
    );
    expect(() => parse({ hedgeMS: 5 })).toThrow(
      'Task `db`: Unknown option `hedgeMS`. Did you mean `hedgeMs`?',
    );
  });

  it('reads hedgeMs as ms or as a quantile of the name’s latency', () => {
    expect(parse({ hedgeMs: 25 })).toMatchObject({ hedgeMs: 25, hedgeQuantile: undefined, hedges: 1 });
    expect(parse({ hedgeMs: 'p95', hedges: 2 })).toMatchObject({
      hedgeMs: undefined,
      hedgeQuantile: 0.95,
      hedges: 2,
    });
  });

  it('skips when late by default only for optional tasks', () => {
    expect(parse({}).skipWhenLate).toBe(false);
    expect(parse({ fallback: null }).skipWhenLate).toBe(true);
    expect(parse({ fallback: null, skipWhenLate: false }).skipWhenLate).toBe(false);
    expect(parse({ skipWhenLate: true }).skipWhenLate).toBe(false);
  });
});

describe('fanout() options retryBudget and hedgeBudget', () => {
  it('accepts partial budgets and rejects bad ones with the option named', () => {
    expect(() => fanout({ retryBudget: { ratio: 0.5 }, hedgeBudget: { minPerSecond: 0 } })).not.toThrow();
    expect(() => fanout({ retryBudget: { ratio: -1 } })).toThrow(
      'Expected `retryBudget.ratio` to be a number from 0 to 1000, got `-1` (number)',
    );
    expect(() => fanout({ hedgeBudget: { windowMs: 1 } })).toThrow(
      'Expected `hedgeBudget.windowMs` to be an integer from 10 to 3600000, got `1` (number)',
    );
    expect(() => fanout({ retryBudget: { ration: 1 } } as never)).toThrow(
      'Unknown option `retryBudget.ration`. Did you mean `retryBudget.ratio`?',
    );
    expect(() => fanout({ retryBudget: 5 } as never)).toThrow(
      'Expected `retryBudget` to be an object `{ ratio?, minPerSecond?, windowMs? }`, got `5` (number)',
    );
  });
});
