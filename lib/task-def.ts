import { quote } from './errors';
import { limitedRun } from './fleet-limit';
import { describe, didYouMean, integer, isPlainObject, rejectUnknown } from './validate';
import type { TaskFn } from './types';

/** A validated task definition. Internal. */
export interface TaskDef {
  name: string;
  run: TaskFn;
  timeoutMs: number | undefined;
  hasFallback: boolean;
  fallback: unknown;
  /** Indexes into the same definition list. */
  after: readonly number[];
  retries: RetryPolicy | undefined;
  attemptTimeoutMs: number | undefined;
  /** A delay in ms, or the quantile (0.9, 0.95, 0.99) of the name's recent latency. */
  hedgeMs: number | undefined;
  hedgeQuantile: number | undefined;
  hedges: number;
  key: string | undefined;
  /** Only ever true for a task with a fallback. */
  skipWhenLate: boolean;
  /** The dependency whose bulkhead it uses (`undefined`: its name's). */
  dependency: string | undefined;
  /**
   * Required, with no policy of its own (no timeout, attempt timeout, retries, hedge, key or fallback): in an
   * `all()` its one attempt ends only with the whole call, so it may share the call's signal (task.ts).
   */
  plain: boolean;
  /** It only calls a worker (`req.fanout.worker()`): it takes a thread's slot and no IO slot (see {@link workerOnly}). */
  slotless: boolean;
}

export interface RetryPolicy {
  max: number;
  backoffMs: number;
  retryOn: ((error: unknown) => boolean) | undefined;
}

const SPEC_KEYS = [
  'run',
  'timeoutMs',
  'fallback',
  'after',
  'retries',
  'attemptTimeoutMs',
  'hedgeMs',
  'hedges',
  'key',
  'skipWhenLate',
  'limit',
  'dependency',
];
const RETRY_KEYS = ['max', 'backoffMs', 'retryOn'];
const QUANTILES: Record<string, number> = { p90: 0.9, p95: 0.95, p99: 0.99 };
const NONE: readonly number[] = [];
/** The longest `dependency` name (it becomes a key of `stats().dependencies` and a metric label). */
const MAX_DEPENDENCY_LENGTH = 128;
/** Retries at most, whatever the budget: each waits for a slot and a token anyway. */
const MAX_RETRIES = 100;

/**
 * Validates a call's tasks before anything starts, so bad input loses nothing: a non-function task, an
 * unknown option, an `after` naming no task of the call, or a cycle in `after` is a `TypeError` naming it.
 */
export function parseTasks(tasks: unknown, where = 'tasks'): readonly TaskDef[] {
  if (typeof tasks !== 'object' || tasks === null || Array.isArray(tasks)) {
    throw new TypeError(`Expected the ${where} to be an object of named tasks, got ${describe(tasks)}`);
  }
  const seen = validatedTasks.get(tasks);
  if (seen !== undefined && sameTasks(tasks as Record<string, unknown>, seen)) return seen.defs;
  const defs = parseAll(tasks);
  if (isPlainObject(tasks)) {
    const keys: string[] = [];
    const values: unknown[] = [];
    for (const key in tasks) {
      keys.push(key);
      values.push(tasks[key]);
    }
    // Shared by every call made with this object from now on: frozen, so that none can change another's.
    for (const def of defs) Object.freeze(def);
    validatedTasks.set(tasks, { keys, values, defs: Object.freeze(defs) });
  }
  return defs;
}

/**
 * Task objects already validated (the usual `const tasks = { … }` at module level, or `gather(tasks)`), with
 * their names and values then, and their definitions: a call made with the same object, its names, values and
 * spec objects unchanged, reuses them whole. Anything changed is validated again (see {@link validated}).
 */
const validatedTasks = new WeakMap<object, { keys: string[]; values: unknown[]; defs: readonly TaskDef[] }>();

/** Same names in the same order, same values, and each spec object among them unchanged since validated. */
function sameTasks(tasks: Record<string, unknown>, seen: { keys: string[]; values: unknown[] }): boolean {
  const { keys, values } = seen;
  let i = 0;
  for (const key in tasks) {
    if (i >= keys.length || keys[i] !== key) return false;
    const value = tasks[key];
    if (values[i] !== value) return false;
    if (typeof value === 'object' && value !== null) {
      const spec = validated.get(value);
      if (spec === undefined || !unchanged(value as Record<string, unknown>, spec)) return false;
    }
    i++;
  }
  return i === keys.length;
}

function parseAll(tasks: object): TaskDef[] {
  const names = Object.keys(tasks);
  const defs: TaskDef[] = new Array<TaskDef>(names.length);
  let anyAfter = false;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const task: unknown = (tasks as Record<string, unknown>)[name];
    if (typeof task === 'function') {
      defs[i] = {
        name,
        run: task as TaskFn,
        timeoutMs: undefined,
        hasFallback: false,
        fallback: undefined,
        after: NONE,
        retries: undefined,
        attemptTimeoutMs: undefined,
        hedgeMs: undefined,
        hedgeQuantile: undefined,
        hedges: 1,
        key: undefined,
        skipWhenLate: false,
        dependency: undefined,
        plain: true,
        slotless: WORKER_ONLY.has(task),
      };
      continue;
    }
    defs[i] = specDef(name, task);
    if (task !== null && typeof task === 'object' && 'after' in task) anyAfter = true;
  }
  if (anyAfter) resolveAfter(names, tasks as Record<string, { after?: unknown }>, defs);
  return defs;
}

/**
 * A spec object validated before, with what it was then: its enumerable keys and their values in order (as
 * `for...in` lists them), and the definition they gave (its `name` and `after` belong to the call, not the spec).
 */
interface Validated {
  keys: string[];
  values: unknown[];
  def: TaskDef;
}

/**
 * Spec objects already validated. The usual spec is defined once (at module level, or the same literal built
 * each call into an object that lives on), so it is validated key by key once, not on every request. A spec is
 * not assumed immutable: each use compares its keys and their values (identity) with the validated ones, without
 * allocating, and anything changed (a value, a key added, removed or renamed) is validated again, with the same
 * errors. Only plain objects are remembered: a class instance's accessors could answer differently each time.
 * Not seen: a change through a non-enumerable or symbol-keyed property, which validation never reads either
 * except for the known options themselves.
 */
const validated = new WeakMap<object, Validated>();

/** A spec object's definition under `name`: from {@link validated} when it did not change, else validated now. */
function specDef(name: string, task: unknown): TaskDef {
  const seen = typeof task === 'object' && task !== null ? validated.get(task) : undefined;
  // A copy each call: the call sets its own `after` on it.
  if (seen !== undefined && unchanged(task as Record<string, unknown>, seen)) return { ...seen.def, name };
  const def = parseSpec(name, task);
  if (isPlainObject(task)) {
    const keys: string[] = [];
    const values: unknown[] = [];
    for (const key in task) {
      keys.push(key);
      values.push(task[key]);
    }
    validated.set(task, { keys, values, def });
    return { ...def };
  }
  return def;
}

/** The spec has the same enumerable keys, in the same order, with the same values as when it was validated. */
function unchanged(spec: Record<string, unknown>, seen: Validated): boolean {
  const { keys, values } = seen;
  let i = 0;
  for (const key in spec) {
    if (i >= keys.length || keys[i] !== key || values[i] !== spec[key]) return false;
    i++;
  }
  return i === keys.length;
}

function parseSpec(name: string, task: unknown): TaskDef {
  if (typeof task !== 'object' || task === null || typeof (task as { run?: unknown }).run !== 'function') {
    throw new TypeError(
      `Expected task ${quote(name)} to be a function or an object with a \`run\` function, got ${describe(task)}`,
    );
  }
  const spec = task as Record<string, unknown>;
  naming(name, () => rejectUnknown(task, SPEC_KEYS));
  const hasFallback = 'fallback' in spec;
  return naming(name, () => {
    const hedge = parseHedge(spec.hedgeMs);
    if (spec.key !== undefined && (typeof spec.key !== 'string' || spec.key === '')) {
      throw new TypeError(`Expected \`key\` to be a non-empty string, got ${describe(spec.key)}`);
    }
    if (spec.skipWhenLate !== undefined && typeof spec.skipWhenLate !== 'boolean') {
      throw new TypeError(`Expected \`skipWhenLate\` to be a boolean, got ${describe(spec.skipWhenLate)}`);
    }
    if (spec.limit !== undefined && (typeof spec.limit !== 'string' || spec.limit === '')) {
      throw new TypeError(`Expected \`limit\` to be the name of a limit, got ${describe(spec.limit)}`);
    }
    const dependency = spec.dependency;
    if (
      dependency !== undefined &&
      (typeof dependency !== 'string' || dependency === '' || dependency.length > MAX_DEPENDENCY_LENGTH)
    ) {
      throw new TypeError(
        `Expected \`dependency\` to be a non-empty string of at most ${MAX_DEPENDENCY_LENGTH} characters, got ${describe(dependency)}`,
      );
    }
    const timeoutMs = spec.timeoutMs === undefined ? undefined : integer('timeoutMs', spec.timeoutMs, 1);
    const retries = parseRetries(spec.retries);
    const attemptTimeoutMs =
      spec.attemptTimeoutMs === undefined ? undefined : integer('attemptTimeoutMs', spec.attemptTimeoutMs, 1);
    const key = spec.key as string | undefined;
    const run = spec.limit === undefined ? (spec.run as TaskFn) : limitedRun(spec.limit, spec.run as TaskFn);
    return {
      name,
      run,
      timeoutMs,
      hasFallback,
      fallback: spec.fallback,
      after: NONE,
      retries,
      attemptTimeoutMs,
      hedgeMs: hedge.ms,
      hedgeQuantile: hedge.quantile,
      hedges: spec.hedges === undefined ? 1 : integer('hedges', spec.hedges, 1, 10),
      key,
      skipWhenLate: hasFallback && spec.skipWhenLate !== false,
      dependency: dependency as string | undefined,
      plain:
        !hasFallback &&
        timeoutMs === undefined &&
        attemptTimeoutMs === undefined &&
        retries === undefined &&
        hedge.ms === undefined &&
        hedge.quantile === undefined &&
        key === undefined,
      slotless: WORKER_ONLY.has(run),
    };
  });
}

/** `run` functions of `req.fanout.worker()` tasks, which need no IO slot (see {@link workerOnly}). */
const WORKER_ONLY = new WeakSet<object>();

/** Marks `run` as a task that only calls a worker: it takes a thread's slot and no IO slot. */
export function workerOnly<F extends object>(run: F): F {
  WORKER_ONLY.add(run);
  return run;
}

/** `retries: 2` or `retries: { max: 2, backoffMs: 20, retryOn: (error) => … }`; `0` is no retry. */
function parseRetries(value: unknown): RetryPolicy | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'number') {
    const max = integer('retries', value, 0, MAX_RETRIES);
    return max === 0 ? undefined : { max, backoffMs: 10, retryOn: undefined };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(
      `Expected \`retries\` to be an integer from 0 to ${MAX_RETRIES} or \`{ max, backoffMs?, retryOn? }\`, ` +
        `got ${describe(value)}`,
    );
  }
  rejectUnknown(value, RETRY_KEYS, 'retries.');
  const o = value as { max?: unknown; backoffMs?: unknown; retryOn?: unknown };
  const max = integer('retries.max', o.max, 0, MAX_RETRIES);
  const backoffMs = o.backoffMs === undefined ? 10 : integer('retries.backoffMs', o.backoffMs, 0);
  if (o.retryOn !== undefined && typeof o.retryOn !== 'function') {
    throw new TypeError(`Expected \`retries.retryOn\` to be a function, got ${describe(o.retryOn)}`);
  }
  if (max === 0) return undefined;
  return { max, backoffMs, retryOn: o.retryOn as RetryPolicy['retryOn'] };
}

function parseHedge(value: unknown): { ms: number | undefined; quantile: number | undefined } {
  if (value === undefined) return { ms: undefined, quantile: undefined };
  if (typeof value === 'string') {
    const quantile = Object.hasOwn(QUANTILES, value) ? QUANTILES[value] : undefined;
    if (quantile !== undefined) return { ms: undefined, quantile };
  } else if (typeof value === 'number') return { ms: integer('hedgeMs', value, 1), quantile: undefined };
  throw new TypeError(
    `Expected \`hedgeMs\` to be an integer from 1 to 2147483647 or one of \`'p90'\`, \`'p95'\`, \`'p99'\`, ` +
      `got ${describe(value)}`,
  );
}

function resolveAfter(names: string[], tasks: Record<string, { after?: unknown }>, defs: TaskDef[]): void {
  const index = new Map(names.map((name, i) => [name, i]));
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const after = tasks[name]?.after;
    if (after === undefined || typeof tasks[name] === 'function') continue;
    if (!Array.isArray(after) || after.some((dep) => typeof dep !== 'string')) {
      throw new TypeError(
        `Task ${quote(name)}: expected \`after\` to be an array of task names, got ${describe(after)}`,
      );
    }
    defs[i]!.after = (after as string[]).map((dep) => {
      const at = index.get(dep);
      if (at === undefined || dep === name) {
        const guess = didYouMean(
          dep,
          names.filter((n) => n !== name),
        );
        throw new TypeError(
          dep === name
            ? `Task ${quote(name)} lists itself in \`after\``
            : `Task ${quote(name)} lists ${quote(dep)} in \`after\`, but this call has no task ${quote(dep)}` +
                (guess ? `. Did you mean ${quote(guess)}?` : ''),
        );
      }
      return at;
    });
  }
  findCycle(defs);
}

/** Depth-first search; throws naming the tasks of the first cycle found. */
function findCycle(defs: TaskDef[]): void {
  const state = new Uint8Array(defs.length); // 0 new, 1 on the path, 2 done
  const path: number[] = [];
  const visit = (i: number): void => {
    state[i] = 1;
    path.push(i);
    for (const dep of defs[i]!.after) {
      if (state[dep] === 1) {
        const cycle = path.slice(path.indexOf(dep)).concat(dep);
        const shown = cycle.length > 6 ? [...cycle.slice(0, 5), dep] : cycle;
        const names = shown.map((j) => quote(defs[j]!.name)).join(' -> ');
        const more = cycle.length > 6 ? ` (${cycle.length - 1} tasks, ${cycle.length - 6} not shown)` : '';
        throw new TypeError(`Tasks ${names} form a cycle in \`after\`${more}`);
      }
      if (state[dep] === 0) visit(dep);
    }
    path.pop();
    state[i] = 2;
  };
  for (let i = 0; i < defs.length; i++) if (state[i] === 0) visit(i);
}

/** Runs a validation, prefixing its message with the task it concerns. */
function naming<T>(name: string, check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof TypeError) error.message = `Task ${quote(name)}: ${error.message}`;
    throw error;
  }
}
