import fc from 'fast-check';
import {
  fanout,
  type FanoutMiddleware,
  type FanoutOptions,
  type TaskContext,
  type TaskEvent,
  type Tasks,
} from 'express-fanout';
import { realProcess } from '../integration/helpers/harness';
import { fakeExchange } from './helpers/fake-request';

/**
 * Fuzzing with fast-check: task names (any string, `__proto__`, `constructor`, CR/LF, 10 KB), budget headers
 * and `fanout()` option objects. Nothing crashes (a bad option is a TypeError naming it), no budget goes past
 * `maxBudgetMs`, no `Server-Timing` header goes over 4 KB (or carries a character Node refuses), no timer
 * overflows, and no result is corrupted: every name is an own key with its own value, and
 * `Object.prototype` is left alone.
 */

const SERVER_TIMING_MAX_BYTES = 4096;
const MESSAGE_MAX_BYTES = 1024;

const warnings: string[] = [];
const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
const prototypeKeys = Reflect.ownKeys(Object.prototype);

beforeAll(() => realProcess.on('warning', onWarning));
afterAll(() => realProcess.off('warning', onWarning));
afterEach(async () => {
  // Warnings are emitted on the next tick.
  await new Promise((resolve) => setImmediate(resolve));
  expect(warnings.filter((w) => w.startsWith('TimeoutOverflowWarning'))).toEqual([]);
  expect(Reflect.ownKeys(Object.prototype)).toEqual(prototypeKeys);
  expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
  warnings.length = 0;
});

const hostileNames = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'valueOf',
  'hasOwnProperty',
  '__defineGetter__',
  'isAdmin',
  'then',
  'total',
  'more',
  '',
  ' ',
  '\r\n',
  'a\r\nSet-Cookie: x=1',
  'db;dur=1',
  '"quoted", with, commas',
  '\u0000',
  '😀',
];

const nameArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...hostileNames),
  fc.string({ maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({ unit: 'grapheme', maxLength: 10 }),
  fc
    .tuple(fc.constantFrom('x', 'é', '\r\n', '😀', ','), fc.integer({ min: 512, max: 10240 }))
    .map(([s, n]) => s.repeat(Math.ceil(n / s.length))),
);

type Kind = 'value' | 'async' | 'throwsWithFallback' | 'rejectsWithFallback' | 'hostileWithFallback';
const kindArb = fc.constantFrom<Kind>(
  'value',
  'async',
  'throwsWithFallback',
  'rejectsWithFallback',
  'hostileWithFallback',
);

function taskOf(kind: Kind, i: number): Tasks[string] {
  const value = { i };
  switch (kind) {
    case 'value':
      return () => value;
    case 'async':
      return async () => value;
    case 'throwsWithFallback':
      return {
        run: () => {
          throw new Error('x');
        },
        fallback: { fb: i },
      };
    case 'rejectsWithFallback':
      return { run: () => Promise.reject(Symbol('x')), fallback: { fb: i } };
    case 'hostileWithFallback':
      return {
        run: () => ({
          get then(): never {
            throw new Error('then getter');
          },
        }),
        fallback: { fb: i },
      };
  }
}

const expectedOf = (kind: Kind, i: number) => (kind === 'value' || kind === 'async' ? { i } : { fb: i });

/** The own property `name` of `object`, read without going through any accessor. */
const own = (object: object, name: string): unknown => Object.getOwnPropertyDescriptor(object, name)?.value;

function expectUncorrupted(
  out: object,
  names: readonly string[],
  valueOf: (name: string, i: number) => unknown,
): void {
  expect([null, Object.prototype]).toContain(Object.getPrototypeOf(out));
  expect(new Set(Reflect.ownKeys(out))).toEqual(new Set(names));
  names.forEach((name, i) => {
    expect(Object.prototype.hasOwnProperty.call(out, name)).toBe(true);
    expect(own(out, name)).toEqual(valueOf(name, i));
  });
}

describe('fuzzed task names', () => {
  it('every name is an own key of the results of all(), settle(), run() and ctx.results, with its own value', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.tuple(nameArb, kindArb), { minLength: 1, maxLength: 10, selector: ([n]) => n }),
        async (entries) => {
          const names = entries.map(([n]) => n);
          const fo = fanout({ budgetMs: 2000, serverTiming: true });
          try {
            const ex = fakeExchange(fo);
            const tasks = Object.fromEntries(
              entries.map(([name, kind], i) => [name, taskOf(kind, i)]),
            ) as Tasks;

            const values = await ex.scope.all(tasks);
            expectUncorrupted(values, names, (_n, i) => expectedOf(entries[i]![1], i));

            const settled = await ex.scope.settle(tasks);
            expectUncorrupted(settled, names, (_n, i) =>
              expect.objectContaining({ value: expectedOf(entries[i]![1], i) }),
            );

            const [first, kind] = entries[0]!;
            expect(await ex.scope.run(taskOf(kind, 0), first)).toEqual(expectedOf(kind, 0));

            // A dependent sees each name as an own key of ctx.results.
            let dependent = '\u0000dependent';
            while (names.includes(dependent)) dependent += '!';
            let seen: object | undefined;
            const withDependent = {
              ...Object.fromEntries(entries.map(([name, k], i) => [name, taskOf(k, i)])),
            } as Tasks;
            Object.defineProperty(withDependent, dependent, {
              enumerable: true,
              value: {
                run: (ctx: TaskContext) => {
                  seen = ctx.results;
                  return 0;
                },
                after: names,
              },
            });
            await ex.scope.all(withDependent);
            expectUncorrupted(seen!, names, (_n, i) => expectedOf(entries[i]![1], i));

            // A required failure names the task in a message of under 1 KB.
            const failure = await ex.scope
              .all({ [first]: () => Promise.reject(new Error('boom')) } as Tasks)
              .then(
                () => undefined,
                (error: unknown) => error as Error & { tasks?: string[] },
              );
            expect(failure?.tasks).toEqual([first]);
            expect(Buffer.byteLength(failure!.message)).toBeLessThan(MESSAGE_MAX_BYTES);

            expect(ex.scope.timings().map((t) => t.name)).toEqual(
              expect.arrayContaining([...names, dependent]),
            );

            // The headers go out: Server-Timing is a valid header value of at most 4 KB.
            ex.finish();
            const header = ex.headers.get('server-timing');
            expect(typeof header).toBe('string');
            expect(Buffer.byteLength(header as string)).toBeLessThanOrEqual(SERVER_TIMING_MAX_BYTES);
            expect(header).not.toMatch(/[\r\n]/);
          } finally {
            await fo.close();
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('a Server-Timing header stays under 4 KB whatever the number and length of the names', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(nameArb, { minLength: 1, maxLength: 80 }), async (names) => {
        const fo = fanout({ budgetMs: 2000, serverTiming: true, perRequest: 100 });
        try {
          const ex = fakeExchange(fo);
          await ex.scope.settle(Object.fromEntries(names.map((name) => [name, () => 1])) as Tasks);
          ex.finish();
          const header = ex.headers.get('server-timing') as string;
          expect(Buffer.byteLength(header)).toBeLessThanOrEqual(SERVER_TIMING_MAX_BYTES);
          expect(header).toMatch(/total;dur=/);
        } finally {
          await fo.close();
        }
      }),
      { numRuns: 100 },
    );
  });
});

const headerValueArb: fc.Arbitrary<string | string[]> = fc.oneof(
  fc.integer({ min: 1, max: 100000 }).map(String),
  fc.integer().map(String),
  fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
  fc.double().map(String),
  fc.constantFrom(
    '0',
    '-1',
    '-0',
    '+5',
    '1e3',
    '0x10',
    ' 5 ',
    '5 5',
    '1.5',
    '',
    '\t7\t',
    '٣',
    '2147483647',
    '2147483648',
    '9007199254740993',
    '99999999999999999999999999',
    'Infinity',
    'NaN',
  ),
  fc.string({ maxLength: 12 }),
  fc.array(fc.integer({ min: 1, max: 1000 }).map(String), { minLength: 2, maxLength: 3 }),
);

/** What the budget header asks for, when it is a valid positive integer of ms. */
const asked = (value: string | string[]): number | undefined =>
  typeof value === 'string' && /^\s*[1-9][0-9]*\s*$/.test(value) ? Number(value) : undefined;

describe('fuzzed budget headers', () => {
  it('never extend the budget beyond maxBudgetMs, never overflow a timer, and a bad value is ignored', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5000 }),
        fc.integer({ min: 0, max: 2147483647 }),
        headerValueArb,
        async (budgetMs, extra, value) => {
          const maxBudgetMs = Math.min(2147483647, budgetMs + extra);
          const fo = fanout({ budgetMs, maxBudgetMs, serverTiming: false });
          try {
            const ex = fakeExchange(fo, { 'x-request-budget-ms': value });
            let outbound: Record<string, string> = {};
            let taskRemaining = -1;
            const settled = await ex.scope.settle({
              t: (ctx) => {
                outbound = ctx.headers();
                taskRemaining = ctx.remainingMs();
                return 1;
              },
            });
            const remaining = ex.scope.remainingMs();
            const want = asked(value);
            const expected = want === undefined ? budgetMs : Math.min(want, maxBudgetMs);
            expect(remaining).toBeLessThanOrEqual(maxBudgetMs);
            expect(remaining).toBeLessThanOrEqual(expected);
            expect(remaining).toBeGreaterThan(expected - 1000);
            expect(ex.scope.deadline - Date.now()).toBeLessThanOrEqual(maxBudgetMs + 1);
            // A budget of a few ms may be spent before the task gets to run: then it timed out, unrun.
            expect(settled.t.status).toBe(taskRemaining < 0 ? 'timeout' : 'fulfilled');
            if (taskRemaining >= 0) {
              expect(taskRemaining).toBeLessThanOrEqual(expected);
              const sent = Number(outbound['x-request-budget-ms']);
              expect(Number.isInteger(sent) && sent >= 1).toBe(true);
              expect(sent).toBeLessThanOrEqual(Math.max(1, Math.ceil(taskRemaining)));
            }
            ex.finish();
          } finally {
            await fo.close();
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

const OPTION_KEYS = [
  'budgetMs',
  'maxBudgetMs',
  'budgetHeader',
  'concurrency',
  'perRequest',
  'maxQueue',
  'graceMs',
  'fallbackMs',
  'serverTiming',
  'workers',
  'onTask',
  'admission',
  'retryBudget',
  'hedgeBudget',
  'budgetMS',
  'timeout',
  '__proto__',
  'constructor',
] as const;

const optionValueArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer({ min: -3, max: 20 }),
  fc.integer(),
  fc.constantFrom(
    0,
    1,
    2147483647,
    2147483648,
    Number.MAX_SAFE_INTEGER,
    2 ** 53,
    Infinity,
    -Infinity,
    NaN,
    -0,
    1.5,
    1e21,
  ),
  fc.double(),
  fc.boolean(),
  fc.constantFrom(null, undefined, false, true, '', 'x-budget', 'bad header', '10', [], {}, () => undefined),
  fc.record(
    { maxWorkers: fc.integer({ min: -1, max: 4 }), minWorkers: fc.integer({ min: -1, max: 4 }) },
    { requiredKeys: [] },
  ),
  fc.record(
    {
      ratio: fc.oneof(fc.double({ min: -1, max: 2 }), fc.constantFrom(0, 0.2, 1, NaN)),
      minPerSecond: fc.oneof(fc.integer({ min: -1, max: 100 }), fc.double()),
      windowMs: fc.oneof(fc.integer({ min: -1, max: 100000 }), fc.constantFrom(2147483648, Infinity)),
    },
    { requiredKeys: [] },
  ),
  fc.anything(),
);

const optionsArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: fc.dictionary(fc.constantFrom(...OPTION_KEYS), optionValueArb, { maxKeys: 4 }) },
  { weight: 1, arbitrary: fc.anything() },
);

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' &&
  value !== null &&
  [Object.prototype, null].includes(Object.getPrototypeOf(value) as object | null);

describe('fuzzed options of fanout()', () => {
  it('either make a working middleware or throw a TypeError naming the option, and never extend the budget', async () => {
    await fc.assert(
      fc.asyncProperty(optionsArb, async (options) => {
        let fo: FanoutMiddleware;
        try {
          fo = fanout(options as FanoutOptions);
        } catch (error) {
          expect(error).toBeInstanceOf(TypeError);
          const message = (error as Error).message;
          const named = isPlainObject(options)
            ? Reflect.ownKeys(options).some((key) => message.includes(`\`${String(key)}`))
            : /options/.test(message);
          expect({ named, message }).toEqual({ named: true, message });
          return;
        }
        try {
          expect(typeof fo).toBe('function');
          const o = (isPlainObject(options) ? options : {}) as FanoutOptions;
          const budgetMs = o.budgetMs ?? 1000;
          const maxBudgetMs = o.maxBudgetMs ?? budgetMs;
          const ex = fakeExchange(fo, { 'x-request-budget-ms': '2147483647' });
          expect(await ex.scope.settle({ a: () => 1 })).toEqual({ a: expect.objectContaining({ value: 1 }) });
          expect(ex.scope.remainingMs()).toBeLessThanOrEqual(maxBudgetMs);
          ex.finish();
          expect(fo.stats()).toMatchObject({ running: 0, queued: 0 });
        } finally {
          await fo.close();
        }
      }),
      { numRuns: 400 },
    );
  });
});

const SPEC_KEYS = [
  'timeoutMs',
  'attemptTimeoutMs',
  'retries',
  'hedgeMs',
  'hedges',
  'key',
  'skipWhenLate',
  'fallback',
  'after',
  'timeout',
] as const;

const specValueArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer({ min: -2, max: 60 }),
  fc.constantFrom(0, 1, 2147483647, 2147483648, 1e21, Infinity, NaN, -0, 1.5, 'p90', 'p95', 'p99', 'p50'),
  fc.boolean(),
  fc.constantFrom(null, undefined, '', 'k', [], ['t'], ['nope'], {}),
  fc.record(
    {
      max: fc.integer({ min: -1, max: 3 }),
      backoffMs: fc.oneof(fc.integer({ min: -1, max: 20 }), fc.constant(2147483648)),
      retryOn: fc.constantFrom(
        () => true,
        () => false,
        'yes',
      ),
    },
    { requiredKeys: [] },
  ),
  fc.anything(),
);

describe('fuzzed task options', () => {
  it('either settle the task to exactly one outcome within the budget or reject with a TypeError naming the task', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.constantFrom(...SPEC_KEYS), specValueArb, { maxKeys: 4 }),
        fc.constantFrom('value', 'throws', 'rejects'),
        async (options, outcome) => {
          const budgetMs = 200;
          const events: TaskEvent[] = [];
          const fo = fanout({ budgetMs, serverTiming: true, onTask: (e) => events.push(e) });
          try {
            const ex = fakeExchange(fo);
            const run = () => {
              if (outcome === 'throws') throw new Error('x');
              return outcome === 'rejects' ? Promise.reject(new Error('y')) : 'v';
            };
            const start = performance.now();
            const settled = await ex.scope.settle({ t: { ...options, run } } as Tasks).then(
              (value) => ({ value }),
              (error: unknown) => ({ error }),
            );
            if ('error' in settled) {
              expect(settled.error).toBeInstanceOf(TypeError);
              expect((settled.error as Error).message).toMatch(/`t`/);
              return;
            }
            expect(performance.now() - start).toBeLessThan(budgetMs + 500);
            expect(Object.keys(settled.value)).toEqual(['t']);
            expect(events.map((e) => e.name)).toEqual(['t']);
            ex.finish();
            expect(Buffer.byteLength(String(ex.headers.get('server-timing')))).toBeLessThanOrEqual(
              SERVER_TIMING_MAX_BYTES,
            );
          } finally {
            await fo.close();
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
