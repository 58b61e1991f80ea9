import type { Request } from 'express';
import { gather, type Fanout, type Tasks } from 'express-fanout';
import { expressVersions } from './helpers/express-versions';
import { describeError, useHarness, type ErrorReport } from './helpers/harness';

describe.each(expressVersions)('task validation (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  /**
   * Calls `call(req.fanout, touch)` in a handler and reports what it produced: a synchronous throw, a
   * rejection or a value, plus which task functions ran (they call `touch(name)`).
   */
  async function attempt(call: (f: Fanout, touch: (name: string) => number) => unknown) {
    const ran: string[] = [];
    let outcome: { kind: 'threw' | 'rejected' | 'resolved'; error?: ErrorReport } | undefined;
    const { http, fo } = await serve({}, (app) =>
      app.get('/', async (req: Request, res) => {
        let result: unknown;
        try {
          result = call(req.fanout, (name) => ran.push(name));
        } catch (error) {
          outcome = { kind: 'threw', error: describeError(error) };
        }
        if (!outcome) {
          try {
            await result;
            outcome = { kind: 'resolved' };
          } catch (error) {
            outcome = { kind: 'rejected', error: describeError(error) };
          }
        }
        res.json({ done: true });
      }),
    );
    await http.get('/').expect(200);
    return { outcome: outcome!, ran, stats: fo.stats() };
  }

  const fn = (touch: (name: string) => number, name: string) => () => touch(name);

  it.each([
    ['a number', 42],
    ['a string', 'select 1'],
    ['null', null],
    ['undefined', undefined],
    ['an object without run', { timeoutMs: 10 }],
    ['a spec whose run is not a function', { run: 'nope' }],
  ])(
    'rejects all() with a TypeError naming a task that is %s, and starts none of the tasks',
    async (_l, bad) => {
      const { outcome, ran, stats } = await attempt((f, touch) =>
        f.all({ good: fn(touch, 'good'), bad: bad as never, other: fn(touch, 'other') }),
      );
      expect(outcome.kind).toBe('rejected');
      expect(outcome.error?.isTypeError).toBe(true);
      expect(outcome.error?.message).toContain('`bad`');
      expect(ran).toEqual([]);
      expect(stats).toMatchObject({ running: 0, queued: 0, completed: 0, failed: 0 });
    },
  );

  it('returns a rejected promise for bad input rather than throwing synchronously', async () => {
    const { outcome } = await attempt((f) => f.all({ bad: 42 as never }));
    expect(outcome.kind).toBe('rejected');
  });

  it.each([
    ['two tasks', { a: ['b'], b: ['a'] }, ['a', 'b']],
    ['one task', { a: ['a'] }, ['a']],
    ['three tasks', { a: ['c'], b: ['a'], c: ['b'], d: [] }, ['a', 'b', 'c']],
  ])('rejects a cycle in `after` through %s with a TypeError naming them', async (_l, graph, cycle) => {
    const { outcome, ran } = await attempt((f, touch) => {
      const tasks: Tasks = {};
      for (const [name, after] of Object.entries(graph)) tasks[name] = { run: fn(touch, name), after };
      return f.all(tasks);
    });
    expect(outcome.kind).toBe('rejected');
    expect(outcome.error?.isTypeError).toBe(true);
    for (const name of cycle) expect(outcome.error?.message).toContain(`\`${name}\``);
    expect(outcome.error?.message).not.toContain('`d`');
    expect(ran).toEqual([]);
  });

  it('rejects an `after` naming an unknown task with a TypeError naming both', async () => {
    const { outcome, ran } = await attempt((f, touch) =>
      // A JavaScript caller: TypeScript rejects the name at compile time (see __tests__/types/after.types.ts).
      f.all({ a: fn(touch, 'a'), b: { run: fn(touch, 'b'), after: ['missing'] as string[] } }),
    );
    expect(outcome.kind).toBe('rejected');
    expect(outcome.error?.isTypeError).toBe(true);
    expect(outcome.error?.message).toContain('`b`');
    expect(outcome.error?.message).toContain('missing');
    expect(ran).toEqual([]);
  });

  it('rejects an `after` that is not an array of names', async () => {
    const { outcome } = await attempt((f, touch) =>
      f.all({ a: fn(touch, 'a'), b: { run: fn(touch, 'b'), after: 'a' as never } }),
    );
    expect(outcome.error?.isTypeError).toBe(true);
    expect(outcome.error?.message).toContain('`b`');
  });

  it.each([[0], [-1], [1.5], [NaN], ['100']])(
    'rejects timeoutMs %p with a TypeError naming the task',
    async (t) => {
      const { outcome, ran } = await attempt((f, touch) =>
        f.all({ a: fn(touch, 'a'), slow: { run: fn(touch, 'slow'), timeoutMs: t as number } }),
      );
      expect(outcome.error?.isTypeError).toBe(true);
      expect(outcome.error?.message).toContain('`slow`');
      expect(outcome.error?.message).toContain('timeoutMs');
      expect(ran).toEqual([]);
    },
  );

  it.each([[0], [-5], [1.5], ['10']])(
    'rejects a call budgetMs of %p with a TypeError naming budgetMs',
    async (b) => {
      const { outcome, ran } = await attempt((f, touch) =>
        f.all({ a: fn(touch, 'a') }, { budgetMs: b as number }),
      );
      expect(outcome.error?.isTypeError).toBe(true);
      expect(outcome.error?.message).toContain('budgetMs');
      expect(ran).toEqual([]);
    },
  );

  it('rejects an unknown call option with a "did you mean", starting nothing', async () => {
    const { outcome, ran } = await attempt((f, touch) =>
      f.all({ a: fn(touch, 'a') }, { budgetMS: 100 } as never),
    );
    expect(outcome.error?.isTypeError).toBe(true);
    expect(outcome.error?.message).toBe('Unknown option `budgetMS`. Did you mean `budgetMs`?');
    expect(ran).toEqual([]);
  });

  it('rejects call options that are not an object', async () => {
    const { outcome, ran } = await attempt((f, touch) => f.settle({ a: fn(touch, 'a') }, 100 as never));
    expect(outcome.error?.isTypeError).toBe(true);
    expect(outcome.error?.message).toBe('Expected the call options to be an object, got `100` (number)');
    expect(ran).toEqual([]);
  });

  it.each([
    ['null', null],
    ['a string', 'tasks'],
    ['a function', () => 1],
  ])('rejects all() given %s instead of a task object', async (_l, tasks) => {
    const { outcome } = await attempt((f) => f.all(tasks as never));
    expect(outcome.error?.isTypeError).toBe(true);
  });

  it('rejects settle() with bad tasks too (a TypeError is a programming error, not a task outcome)', async () => {
    const { outcome, ran } = await attempt((f, touch) => f.settle({ a: fn(touch, 'a'), bad: 7 as never }));
    expect(outcome.kind).toBe('rejected');
    expect(outcome.error?.isTypeError).toBe(true);
    expect(outcome.error?.message).toContain('`bad`');
    expect(ran).toEqual([]);
  });

  it('rejects run() with a non-function task', async () => {
    const { outcome } = await attempt((f) => f.run(42 as never, 'x'));
    expect(outcome.kind).toBe('rejected');
    expect(outcome.error?.isTypeError).toBe(true);
  });

  it('keeps working after bad input: the next call of the same request runs', async () => {
    let second: unknown;
    const { http } = await serve({}, (app) =>
      app.get('/', async (req, res) => {
        await req.fanout.all({ bad: null as never }).catch(() => undefined);
        second = await req.fanout.all({ ok: () => 'ok' });
        res.json(second);
      }),
    );
    await http.get('/').expect(200, { ok: 'ok' });
  });

  describe('gather() validates at factory time', () => {
    it('throws a TypeError naming a non-function task', () => {
      expect(() => gather({ a: () => 1, b: 42 as never })).toThrow(TypeError);
      expect(() => gather({ a: () => 1, b: 42 as never })).toThrow(/`b`/);
    });

    it('throws a TypeError naming the tasks of an `after` cycle', () => {
      const build = () => gather({ a: { run: () => 1, after: ['b'] }, b: { run: () => 2, after: ['a'] } });
      expect(build).toThrow(TypeError);
      expect(build).toThrow(/`a`/);
      expect(build).toThrow(/`b`/);
    });

    it('throws a TypeError for an unknown `after` name', () => {
      expect(() => gather({ a: { run: () => 1, after: ['nope'] as string[] } })).toThrow(TypeError);
    });

    it.each([[99], [600], [1.5], ['200']])('throws a TypeError for status %p', (status) => {
      expect(() => gather({ a: () => 1 }, { status: status as number })).toThrow(TypeError);
    });

    it('throws a TypeError for a map that is not a function', () => {
      expect(() => gather({ a: () => 1 }, { map: 'x' as never })).toThrow(TypeError);
    });

    it('throws a TypeError with a did-you-mean for an unknown option (`stauts` was silently accepted)', () => {
      const build = () => gather({ a: () => 1 }, { stauts: 201 } as never);
      expect(build).toThrow(TypeError);
      expect(build).toThrow('Unknown option `stauts`. Did you mean `status`?');
      expect(() => gather({ a: () => 1 }, { zzzzzz: 1 } as never)).toThrow(
        'Unknown option `zzzzzz`. Known options: `status`, `map`',
      );
    });

    it.each([[null], [201], ['x'], [[]]])(
      'throws a TypeError for options %p that are not an object',
      (options) => {
        expect(() => gather({ a: () => 1 }, options as never)).toThrow(/options of `gather\(\)`/);
      },
    );

    it('throws a TypeError for tasks that are neither an object nor a function', () => {
      expect(() => gather(42 as never)).toThrow(TypeError);
    });

    it('passes a bad task set built per request to next(err): a 500, nothing started', async () => {
      let ran = false;
      const { http, errors } = await serve({}, (app) =>
        app.get(
          '/',
          gather(() => ({
            a: () => {
              ran = true;
              return 1;
            },
            b: 'bad' as never,
          })),
        ),
      );
      await http.get('/').expect(500);
      expect(errors[0]).toBeInstanceOf(TypeError);
      expect(ran).toBe(false);
    });
  });
});
