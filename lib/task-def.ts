import { quote } from './errors';
import { describe, didYouMean, integer, rejectUnknown } from './options';
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
}

const SPEC_KEYS = ['run', 'timeoutMs', 'fallback', 'after', 'retries', 'hedgeMs', 'key'];
const PLANNED = ['retries', 'hedgeMs', 'key'];
const NONE: readonly number[] = [];

/**
 * Validates a call's tasks before anything starts, so bad input loses nothing: a non-function task, an
 * unknown option, an `after` naming no task of the call, or a cycle in `after` is a `TypeError` naming it.
 */
export function parseTasks(tasks: unknown, where = 'tasks'): TaskDef[] {
  if (typeof tasks !== 'object' || tasks === null || Array.isArray(tasks)) {
    throw new TypeError(`Expected the ${where} to be an object of named tasks, got ${describe(tasks)}`);
  }
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
      };
      continue;
    }
    defs[i] = parseSpec(name, task);
    if (task !== null && typeof task === 'object' && 'after' in task) anyAfter = true;
  }
  if (anyAfter) resolveAfter(names, tasks as Record<string, { after?: unknown }>, defs);
  return defs;
}

function parseSpec(name: string, task: unknown): TaskDef {
  if (typeof task !== 'object' || task === null || typeof (task as { run?: unknown }).run !== 'function') {
    throw new TypeError(
      `Expected task ${quote(name)} to be a function or an object with a \`run\` function, got ${describe(task)}`,
    );
  }
  const spec = task as Record<string, unknown>;
  naming(name, () => rejectUnknown(task, SPEC_KEYS));
  for (const key of PLANNED) {
    if (spec[key] !== undefined) {
      throw new TypeError(
        `Task ${quote(name)}: option \`${key}\` is not available in express-fanout 0.1 (it is planned)`,
      );
    }
  }
  return {
    name,
    run: spec.run as TaskFn,
    timeoutMs:
      spec.timeoutMs === undefined ? undefined : naming(name, () => integer('timeoutMs', spec.timeoutMs, 1)),
    hasFallback: 'fallback' in spec,
    fallback: spec.fallback,
    after: NONE,
  };
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
