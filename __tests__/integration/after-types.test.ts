// What the compiler checks of `after` (see __tests__/types/after.types.ts), seen at run time: a typed
// dependent receives the value its type promises, and what the types cannot see (a cycle) is still caught.
import { gather, type Fanout, type TaskContext } from 'express-fanout';
import { expressVersions } from './helpers/express-versions';
import { report, useHarness } from './helpers/harness';

interface User {
  id: number;
  name: string;
}

describe.each(expressVersions)('typed `after` (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  const one = (fn: (f: Fanout) => Promise<unknown>) =>
    serve({ graceMs: 100 }, (app) =>
      app.get(
        '/',
        report((req) => fn(req.fanout)),
      ),
    );

  it('hands a typed dependent the value of each task it names, with no cast', async () => {
    const { http } = await one(async (f) => {
      const r = await f.all({
        user: async (): Promise<User> => ({ id: 7, name: 'Ada' }),
        quota: {
          run: (): Promise<number> => Promise.reject(new Error('quota service down')),
          fallback: null,
        },
        prefs: {
          after: ['user', 'quota'],
          // Compiles only because `results.user` is a `User` and `results.quota` a `number | null`.
          run: ({ results }) => ({
            owner: results.user.id,
            name: results.user.name.toUpperCase(),
            quota: results.quota ?? 0,
          }),
        },
      });
      const owner: number = r.prefs.owner;
      return { owner, prefs: r.prefs };
    });
    const res = await http.get('/').expect(200);
    expect(res.body).toEqual({ ok: true, value: { owner: 7, prefs: { owner: 7, name: 'ADA', quota: 0 } } });
  });

  it('hands a dependent of an annotated dependency its value along a chain', async () => {
    const { http } = await one((f) =>
      f.all({
        user: async ({ signal }: TaskContext): Promise<User> => ({ id: signal.aborted ? 0 : 3, name: 'Lin' }),
        orders: {
          after: ['user'],
          run: ({ results }: TaskContext<{ user: User }>) => [results.user.id * 10, results.user.id * 10 + 1],
        },
        summary: {
          after: ['orders', 'user'],
          run: ({ results }) => `${results.user.name}: ${results.orders.length}`,
        },
      }),
    );
    const res = await http.get('/').expect(200);
    expect(res.body.value).toEqual({ user: { id: 3, name: 'Lin' }, orders: [30, 31], summary: 'Lin: 2' });
  });

  it('types the dependents of settle() and gather() the same way', async () => {
    const { http } = await serve({ graceMs: 100 }, (app) => {
      app.get(
        '/settle',
        report(async (req) => {
          const s = await req.fanout.settle({
            user: (): User => ({ id: 1, name: 'Sam' }),
            greeting: { after: ['user'], run: ({ results }) => `hello ${results.user.name}` },
          });
          return s.greeting.value;
        }),
      );
      app.get(
        '/gather',
        gather({
          user: (): User => ({ id: 2, name: 'Kim' }),
          greeting: { after: ['user'], run: ({ results }) => `hello ${results.user.name}` },
        }),
      );
    });
    expect((await http.get('/settle').expect(200)).body.value).toBe('hello Sam');
    expect((await http.get('/gather').expect(200)).body).toEqual({
      user: { id: 2, name: 'Kim' },
      greeting: 'hello Kim',
    });
  });

  it('compiles a cycle in `after` and rejects it at run time with a TypeError naming the cycle', async () => {
    const ran: string[] = [];
    const { http } = await one((f) =>
      f.all({
        a: { after: ['c'], run: () => ran.push('a') },
        b: { after: ['a'], run: () => ran.push('b') },
        c: { after: ['b'], run: () => ran.push('c') },
        d: () => ran.push('d'),
      }),
    );
    const res = await http.get('/').expect(200);
    expect(res.body.ok).toBe(false);
    expect(res.body.error).toMatchObject({
      isTypeError: true,
      message: 'Tasks `a` -> `c` -> `b` -> `a` form a cycle in `after`',
    });
    expect(ran).toEqual([]);
  });

  it('compiles a task waiting for itself through another and throws at gather() time', () => {
    const build = () => gather({ a: { after: ['b'], run: () => 1 }, b: { after: ['a'], run: () => 2 } });
    expect(build).toThrow(new TypeError('Tasks `a` -> `b` -> `a` form a cycle in `after`'));
  });
});
