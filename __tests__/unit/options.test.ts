import { fanout, type FanoutMiddleware, type FanoutOptions } from 'express-fanout';
import { zeroStats } from '../fixtures/zero-stats';

/** Creates a middleware and closes it at the end of the test. */
const created: FanoutMiddleware[] = [];
const make = (options?: FanoutOptions): FanoutMiddleware => {
  const fo = fanout(options);
  created.push(fo);
  return fo;
};
afterEach(async () => {
  await Promise.all(created.splice(0).map((fo) => fo.close()));
});

/** `fanout(options)` must throw a TypeError whose message matches `pattern`. */
function expectTypeError(options: unknown, pattern: RegExp | string): void {
  let thrown: unknown;
  try {
    make(options as FanoutOptions);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(TypeError);
  const message = (thrown as Error).message;
  if (typeof pattern === 'string') expect(message).toBe(pattern);
  else expect(message).toMatch(pattern);
}

describe('fanout() options', () => {
  it('accepts no options, an empty object and explicit undefined values', () => {
    expect(() => make()).not.toThrow();
    expect(() => make({})).not.toThrow();
    expect(() => make({ budgetMs: undefined, concurrency: undefined })).not.toThrow();
  });

  it('accepts every option at a valid value', () => {
    expect(() =>
      make({
        budgetMs: 500,
        maxBudgetMs: 2000,
        budgetHeader: 'x-budget',
        concurrency: 64,
        perRequest: 4,
        maxQueue: 100,
        graceMs: 250,
        serverTiming: false,
        workers: false,
        onTask: () => undefined,
      }),
    ).not.toThrow();
  });

  it('returns a middleware function that carries close() and stats()', () => {
    const fo = make();
    expect(typeof fo).toBe('function');
    expect(fo.length).toBe(3);
    expect(typeof fo.close).toBe('function');
    expect(typeof fo.stats).toBe('function');
  });

  it('returns a named middleware function, so stack traces and app._router show it', () => {
    expect(make().name).not.toBe('');
  });

  it('starts with every stats() counter at zero', () => {
    expect(make().stats()).toEqual(zeroStats);
  });

  it('says what it expected and what it got: concurrency 0', () => {
    expectTypeError({ concurrency: 0 }, 'Expected `concurrency` to be an integer >= 1, got `0` (number)');
  });

  it('suggests the option meant when an option name is misspelt', () => {
    expectTypeError({ budgetMS: 100 }, 'Unknown option `budgetMS`. Did you mean `budgetMs`?');
    expectTypeError({ perrequest: 2 }, /^Unknown option `perrequest`\. Did you mean `perRequest`\?$/);
    expectTypeError({ maxqueue: 2 }, /Did you mean `maxQueue`\?/);
  });

  it('rejects an unknown option that resembles nothing', () => {
    expectTypeError({ frobnicate: true }, /Unknown option `frobnicate`/);
  });

  it.each([[5], ['fast'], [[]], [() => undefined]])(
    'rejects options that are not a plain object: %p',
    (options) => {
      expect(() => make(options as FanoutOptions)).toThrow(TypeError);
    },
  );

  describe.each([
    ['budgetMs', 1],
    ['concurrency', 1],
    ['perRequest', 1],
    ['maxBudgetMs', 1],
  ] as const)('%s (an integer >= %d)', (name, min) => {
    it.each([[0], [-1], [1.5], [NaN], [Infinity], ['10'], [null], [true]])(
      'rejects %p naming the option',
      (value) => {
        const options: Record<string, unknown> = { [name]: value };
        // maxBudgetMs must also be >= budgetMs; keep budgetMs at its minimum so only the type matters.
        if (name === 'maxBudgetMs') options.budgetMs = 1;
        expectTypeError(options, new RegExp(`\`${name}\``));
      },
    );

    it(`accepts ${min}`, () => {
      expect(() => make({ [name]: min, ...(name === 'maxBudgetMs' ? { budgetMs: 1 } : {}) })).not.toThrow();
    });
  });

  it.each([
    ['perRequest', 0],
    ['budgetMs', -5],
  ] as const)('uses one message pattern for every integer option: %s = %p', (name, value) => {
    expectTypeError(
      { [name]: value },
      new RegExp(`^Expected \`${name}\` to be an integer .*got \`${value}\` \\(number\\)$`),
    );
  });

  it('accepts budgetMs up to 2147483647 (the largest timer delay) and rejects more', () => {
    expect(() => make({ budgetMs: 2147483647 })).not.toThrow();
    expectTypeError({ budgetMs: 2147483648 }, /`budgetMs`.*2147483648/);
  });

  it('rejects maxBudgetMs below budgetMs with a TypeError naming maxBudgetMs', () => {
    expectTypeError({ budgetMs: 500, maxBudgetMs: 100 }, /`maxBudgetMs`/);
    expect(() => make({ budgetMs: 500, maxBudgetMs: 500 })).not.toThrow();
  });

  it('rejects maxBudgetMs below the default budgetMs (1000) too', () => {
    expectTypeError({ maxBudgetMs: 999 }, /`maxBudgetMs`/);
  });

  describe.each(['maxQueue', 'graceMs'] as const)('%s (an integer >= 0)', (name) => {
    it('accepts 0', () => {
      expect(() => make({ [name]: 0 })).not.toThrow();
    });
    it.each([[-1], [0.5], [NaN], ['5'], [null]])('rejects %p naming the option', (value) => {
      expectTypeError({ [name]: value }, new RegExp(`\`${name}\``));
    });
  });

  it.each([[true], [42], [''], [null]])('rejects budgetHeader %p naming the option', (value) => {
    expectTypeError({ budgetHeader: value }, /`budgetHeader`/);
  });

  it('accepts budgetHeader false and any header name', () => {
    expect(() => make({ budgetHeader: false })).not.toThrow();
    expect(() => make({ budgetHeader: 'x-deadline-ms' })).not.toThrow();
  });

  it.each([['yes'], [1], [null]])('rejects serverTiming %p naming the option', (value) => {
    expectTypeError({ serverTiming: value }, /`serverTiming`/);
  });

  it.each([[42], ['pool'], [true]])('rejects workers %p naming the option', (value) => {
    expectTypeError({ workers: value }, /`workers`/);
  });

  it.each([['log'], [{}]])('rejects onTask %p naming the option', (value) => {
    expectTypeError({ onTask: value }, /`onTask`/);
  });

  it('never coerces a bad value to the default: the throw happens at fanout() time', () => {
    expect(() => fanout({ concurrency: '8' as unknown as number })).toThrow(TypeError);
    expect(() => fanout({ graceMs: -1 })).toThrow(TypeError);
  });
});
