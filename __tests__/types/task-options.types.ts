// Type tests of task spec objects (issue 17). Compiled by `npm run typecheck`, never run: each
// `@ts-expect-error` must meet an error on the next line, or the type check fails.
import { gather } from 'express-fanout';
import type { Fanout, TaskContext } from 'express-fanout';

declare const fo: Fanout;
declare function load(ctx: TaskContext): Promise<number>;

export async function misspeltTaskOptionsDoNotCompile(): Promise<void> {
  // @ts-expect-error `timeoutMS` is no task option (`timeoutMs` is)
  await fo.all({ a: { run: () => 1, timeoutMS: 5 } });
  // @ts-expect-error `fallbak` is no task option, whatever its value
  await fo.all({ a: { run: () => 1, fallbak: null }, b: () => 2 });
  // @ts-expect-error in settle() too
  await fo.settle({ a: { run: load, retrys: 2 } });
  // @ts-expect-error in run() too
  await fo.run({ run: () => 1, timeoutMS: 5 });
  // @ts-expect-error and next to `after`
  await fo.all({ a: () => 1, b: { after: ['a'], run: ({ results }) => results.a, skipWhenlate: false } });
}

// @ts-expect-error in gather() too
export const misspeltInGather = gather({ a: { run: () => 1, fallbak: 0 } });
// @ts-expect-error a task is a function or { run }: "task `a` must be a function or { run }"
export const notATask = gather({ a: 5 });
// @ts-expect-error in all() too
export const notATaskInAll = (): Promise<unknown> => fo.all({ ok: () => 1, a: 'text' });

export async function everyTaskOptionCompiles(): Promise<void> {
  const r = await fo.all({
    a: { run: load, timeoutMs: 50, fallback: 0, retries: { max: 1, backoffMs: 5 }, attemptTimeoutMs: 20 },
    b: { run: () => 'b', hedgeMs: 'p95', hedges: 1, key: 'b', skipWhenLate: true, after: ['a'] },
    c: { run: async () => 3, limit: 'payments' },
  });
  const n: number = r.a;
  const s: string = r.b;
  const c: number = r.c;
  void [n, s, c];
  await fo.settle({ x: { run: () => 1, fallback: () => 2 } });
  gather({ x: { run: () => 1, timeoutMs: 10 } }, { status: 201 });
}

export function gatherOptionsAreChecked(): void {
  // @ts-expect-error `stauts` is no option of gather() (also a TypeError at run time)
  gather({ a: () => 1 }, { stauts: 201 });
}
