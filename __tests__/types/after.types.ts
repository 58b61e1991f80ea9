// Type tests of `after` and `ctx.results` (issue 13). Compiled by `npm run typecheck` (tsc includes
// __tests__), never run: each `@ts-expect-error` must meet an error on the next line, and each
// `check<Equal<A, B>>()` needs A and B to be the same type, or the type check fails.
import type { Request } from 'express';
import { gather } from 'express-fanout';
import type { Fanout, Settled, Task, TaskContext, Tasks } from 'express-fanout';

type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
/** Compiles only when given `true`: `check<Equal<typeof value, Expected>>(value)`. */
function check<T extends true>(..._values: unknown[]): T | void {}

interface User {
  id: number;
  name: string;
}
interface Prefs {
  theme: string;
}
declare const fo: Fanout;
declare function loadUser(): Promise<User>;
declare function loadPrefs(id: number): Promise<Prefs>;
declare function loadCount(): number;
declare const lastGood: { user: User | undefined };
/** A task defined away from the call: its parameter is annotated, so its value is known early. */
const userTask = async (ctx: TaskContext): Promise<User> => (ctx.signal.aborted ? loadUser() : loadUser());

export async function rightNamesGiveTheDependenciesExactTypes(): Promise<void> {
  const r = await fo.all({
    user: () => loadUser(),
    count: { run: () => loadCount(), timeoutMs: 50 },
    prefs: {
      after: ['user'],
      run: ({ results }) => {
        check<Equal<typeof results, { user: User }>>();
        return loadPrefs(results.user.id);
      },
    },
    both: {
      after: ['user', 'count'],
      run: (ctx) => {
        check<Equal<typeof ctx.results, { user: User; count: number }>>();
        return `${ctx.results.user.name}: ${ctx.results.count}`;
      },
    },
  });
  check<Equal<typeof r, { user: User; count: number; prefs: Prefs; both: string }>>(r);
}

export async function aFallbackWidensTheDependencysType(): Promise<void> {
  await fo.all({
    user: { run: () => loadUser(), fallback: null },
    cached: { run: () => loadUser(), fallback: () => lastGood.user },
    count: { run: () => loadCount(), fallback: 'n/a' },
    page: {
      after: ['user', 'cached', 'count'],
      run: ({ results }) => {
        check<Equal<typeof results.user, User | null>>();
        check<Equal<typeof results.cached, User | undefined>>();
        check<Equal<typeof results.count, number | string>>();
        return results.user?.name ?? 'anonymous';
      },
    },
  });
}

export async function aTaskDefinedElsewhereIsTypedToo(): Promise<void> {
  await fo.all({
    user: userTask,
    prefs: { after: ['user'], run: ({ results }) => loadPrefs(results.user.id) },
  });
}

export async function settleTypesItsDependenciesAndResults(): Promise<void> {
  const s = await fo.settle({
    user: () => loadUser(),
    prefs: {
      after: ['user'],
      run: ({ results }) => {
        check<Equal<typeof results, { user: User }>>();
        return loadPrefs(results.user.id);
      },
      fallback: null,
    },
  });
  check<Equal<typeof s, { user: Settled<User>; prefs: Settled<Prefs | null> }>>(s);
}

export const gatherOfAnObject = gather(
  {
    user: () => loadUser(),
    prefs: {
      after: ['user'],
      run: ({ results }) => {
        check<Equal<typeof results, { user: User }>>();
        return loadPrefs(results.user.id);
      },
    },
  },
  {
    map: (values) => {
      check<Equal<typeof values, { user: User; prefs: Prefs }>>();
      return values.prefs.theme;
    },
  },
);

// A function of the request is typed before TypeScript has read its tasks: the names in `after` are checked,
// but `ctx.results` stays a plain record there (the documented limit of that form).
export const gatherOfAFunctionOfTheRequest = gather((req: Request) => ({
  user: () => loadUser(),
  prefs: {
    after: ['user'],
    run: ({ results }) => {
      check<Equal<typeof results, Record<string, unknown>>>();
      return loadPrefs((results.user as User).id + Number(req.query.offset ?? 0));
    },
  },
}));

// The documented limit: a dependency whose own `run` takes `ctx` is still being typed when its dependents
// are, so it is `unknown` there (its name is checked all the same). Annotating that `run`'s parameter
// (as `userTask` does) makes it known.
export async function aDependencyWhoseRunTakesCtxIsUnknown(): Promise<void> {
  const r = await fo.all({
    user: () => loadUser(),
    prefs: { after: ['user'], run: ({ results }) => loadPrefs(results.user.id) },
    page: {
      after: ['prefs'],
      run: ({ results }) => {
        check<Equal<typeof results, { prefs: unknown }>>();
        return String(results.prefs);
      },
    },
  });
  check<Equal<typeof r.prefs, Prefs>>(r);
}

// Annotating the parameter of a dependency that takes `ctx` makes its value known to its dependents, and the
// annotation is checked against `after`.
export async function anAnnotatedParameterTypesTheChain(): Promise<void> {
  const r = await fo.all({
    user: ({ signal }: TaskContext) => (signal.aborted ? loadUser() : loadUser()),
    prefs: { after: ['user'], run: ({ results }: TaskContext<{ user: User }>) => loadPrefs(results.user.id) },
    page: {
      after: ['user', 'prefs'],
      run: ({ results }) => {
        check<Equal<typeof results, { user: User; prefs: Prefs }>>();
        return `${results.user.name}: ${results.prefs.theme}`;
      },
    },
  });
  check<Equal<typeof r, { user: User; prefs: Prefs; page: string }>>(r);
  await fo.all({
    user: () => loadUser(),
    count: () => loadCount(),
    prefs: {
      after: ['user'],
      // @ts-expect-error: the annotation claims a result that `after` does not name
      run: ({ results }: TaskContext<{ user: User; count: number }>) => results.count,
    },
  });
}

export async function wrongNamesDoNotCompile(): Promise<void> {
  await fo.all({
    user: () => loadUser(),
    prefs: {
      // @ts-expect-error: `usr` is no task of this call
      after: ['usr'],
      run: (ctx) => ctx.remainingMs(),
    },
    // A dependent that does not read `ctx` is checked the same way.
    // @ts-expect-error: `usr` is no task of this call
    count: { after: ['usr'], run: () => loadCount() },
  });
  await fo.settle({
    user: () => loadUser(),
    // @ts-expect-error: `usr` is no task of this call
    prefs: { after: ['user', 'usr'], run: () => 1 },
  });
  // One line each: with `gather()` the error may be reported at the call rather than at `after`.
  // @ts-expect-error: `usr` is no task of this call
  gather({ user: () => loadUser(), prefs: { after: ['usr'], run: () => 1 } });
  // @ts-expect-error: `usr` is no task of this call
  gather(() => ({ user: () => loadUser(), prefs: { after: ['usr'], run: () => 1 } }));
}

export async function aTaskCannotWaitForItself(): Promise<void> {
  await fo.all({
    user: () => loadUser(),
    // @ts-expect-error: a task cannot be its own dependency
    prefs: { after: ['prefs'], run: () => 1 },
  });
}

export async function onlyTheNamedResultsCanBeRead(): Promise<void> {
  await fo.all({
    user: () => loadUser(),
    count: () => loadCount(),
    prefs: {
      after: ['user'],
      run: ({ results }) => {
        // @ts-expect-error: `count` is not in `after`
        return results.count;
      },
    },
    noAfter: {
      run: ({ results }) => {
        // @ts-expect-error: no `after`, no results
        return results.user;
      },
    },
    // A task function has no `after`, so no results either.
    // @ts-expect-error: no `after`, no results
    fn: ({ results }) => results.user,
  });
  await fo.settle({
    user: () => loadUser(),
    count: () => loadCount(),
    // @ts-expect-error: `count` is not in `after`
    prefs: { after: ['user'], run: ({ results }) => results.count },
  });
}

// JavaScript-ish dynamic use keeps compiling, checked at run time only.
export async function dynamicTasksStillCompile(names: string[]): Promise<void> {
  const tasks: Tasks = {};
  for (const name of names) tasks[name] = () => name;
  tasks.last = { after: names, run: ({ results }) => Object.keys(results) };
  const r = await fo.all(tasks);
  check<Equal<typeof r, { [x: string]: unknown }>>(r);

  const record: Record<string, Task<number>> = { a: () => 1, b: { run: () => 2, after: ['a'] } };
  await fo.all(record);

  // A generic wrapper passes its tasks on unchecked (their names are not known where it is written).
  const wrap = <T extends Tasks>(tasks: T) => fo.all(tasks);
  const wrapped = await wrap({ a: () => 1, b: { after: ['a'], run: () => 2 } });
  check<Equal<typeof wrapped, { a: number; b: number }>>(wrapped);

  const plain = await fo.all({ a: () => 1, b: async () => 'two' });
  check<Equal<typeof plain, { a: number; b: string }>>(plain);

  // `after` as a list built at run time is checked at run time, and `results` is then a plain record.
  await fo.all({
    a: () => 1,
    b: {
      after: names,
      run: ({ results }) => {
        check<Equal<typeof results, Record<string, unknown>>>();
        return results.a;
      },
    },
  });
}
