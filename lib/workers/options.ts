import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, integer, isPlainObject, rejectUnknown } from '../validate';
import type { WorkerOptions, WorkerResourceLimits as ResourceLimits } from '../types';
import { cloneProblem } from './clone-check';

/** The `workers` option after validation, with every default applied. Internal. */
export interface ResolvedWorkerOptions {
  /** Absolute path of the worker script, checked to exist when `fanout()` was called. */
  script: string | undefined;
  maxWorkers: number;
  minWorkers: number;
  maxQueueSize: number;
  resourceLimits: ResourceLimits | undefined;
  execArgv: string[] | undefined;
  /** Given to every thread as `require('node:worker_threads').workerData`; checked to be cloneable. */
  workerData: unknown;
}

const KNOWN: readonly (keyof WorkerOptions)[] = [
  'script',
  'maxWorkers',
  'minWorkers',
  'maxQueueSize',
  'resourceLimits',
  'execArgv',
  'workerData',
];
const LIMITS: readonly (keyof ResourceLimits)[] = [
  'maxOldGenerationSizeMb',
  'maxYoungGenerationSizeMb',
  'codeRangeSizeMb',
  'stackSizeMb',
];

/**
 * Default thread count: one per core, and at least 2.
 *
 * workerpool's own default is cores - 1: one thread on a 2-core machine, where a single blocking call (a
 * synchronous SQLite query, a 20 ms wait on a lock or a disk) holds every other worker task in the queue.
 * Two threads keep a second lane open; measured here, 40 blocking 20 ms calls took 818 ms on 1 thread and
 * 409 ms on 2. Beyond one thread per core CPU work gains nothing (40 fib(31) calls: 740-870 ms with 2, 3
 * or 4 threads) and is worse under deadlines: threads that time-slice finish late together, and a running
 * task cut at its deadline costs a thread termination and respawn, where a queued one is dropped for free.
 * So the default follows the cores, and apps whose worker methods mostly *wait* raise `maxWorkers`
 * (a waiting thread costs ~9 MB, not CPU): 4 threads did the same 40 blocking calls in 205 ms.
 */
export function defaultMaxWorkers(): number {
  return Math.max(2, availableParallelism());
}

/**
 * Default `maxQueueSize`: large, because admission bounds the worker queue by time (see `WorkerOptions.maxQueueSize`
 * for the measurement); it only bounds a first burst before anything is measured, and `admission: false`.
 */
export const DEFAULT_MAX_QUEUE_SIZE = 1024;

/**
 * The script as an absolute path. A `file:` URL (object or string) is converted; a relative path is
 * resolved against `process.cwd()` (as `node` does with its entry point), so prefer an absolute path built
 * from `__dirname` or `import.meta.url` when the server may start from another directory.
 */
function resolveScript(value: unknown): string {
  let path: string;
  if (value instanceof URL || (typeof value === 'string' && value.startsWith('file:'))) {
    try {
      path = fileURLToPath(value);
    } catch {
      throw new TypeError(`Expected \`workers.script\` to be a path or a file: URL, got ${describe(value)}`);
    }
  } else if (typeof value === 'string' && value !== '') {
    path = isAbsolute(value) ? value : resolve(value);
  } else {
    throw new TypeError(`Expected \`workers.script\` to be a path or a file: URL, got ${describe(value)}`);
  }
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch {
    // reported below
  }
  if (!isFile) {
    throw new TypeError(`Expected \`workers.script\` to name an existing file, got \`${path}\` (not found)`);
  }
  return path;
}

function resolveLimits(value: unknown): ResourceLimits {
  if (!isPlainObject(value)) {
    throw new TypeError(`Expected \`workers.resourceLimits\` to be a plain object, got ${describe(value)}`);
  }
  rejectUnknown(value, LIMITS, 'workers.resourceLimits.');
  const limits: ResourceLimits = {};
  for (const key of LIMITS) {
    const v = value[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new TypeError(
        `Expected \`workers.resourceLimits.${key}\` to be a number of MB > 0, got ${describe(v)}`,
      );
    }
    limits[key] = v;
  }
  return limits;
}

function resolveExecArgv(value: unknown): string[] {
  if (!Array.isArray(value) || !value.every((arg) => typeof arg === 'string')) {
    throw new TypeError(`Expected \`workers.execArgv\` to be an array of strings, got ${describe(value)}`);
  }
  return [...value];
}

/** The value itself: a thread receives a structured clone, so what cannot be cloned fails here, not at spawn. */
function resolveWorkerData(value: unknown): unknown {
  const problem = cloneProblem(value, 'workerData');
  if (problem !== undefined) {
    throw new TypeError(`Expected \`workers.workerData\` to be structured-cloneable: ${problem}`);
  }
  return value;
}

/**
 * Validates the `workers` option of `fanout()` once, at factory time: `undefined` gives the defaults with
 * no script (`worker()` then rejects with a `WorkerScriptError`), `false` disables worker threads, and any
 * invalid field throws a `TypeError` naming it. A `script` that does not exist is a `TypeError` here, not
 * at the first request.
 */
export function resolveWorkerOptions(input: unknown): ResolvedWorkerOptions | false {
  if (input === false) return false;
  if (input === undefined) input = {};
  if (!isPlainObject(input)) {
    throw new TypeError(`Expected \`workers\` to be a plain object or \`false\`, got ${describe(input)}`);
  }
  rejectUnknown(input, KNOWN, 'workers.');
  const o = input as WorkerOptions;
  const max = Number.MAX_SAFE_INTEGER;
  const maxWorkers =
    o.maxWorkers === undefined ? defaultMaxWorkers() : integer('workers.maxWorkers', o.maxWorkers, 1, max);
  const minWorkers = o.minWorkers === undefined ? 0 : integer('workers.minWorkers', o.minWorkers, 0, max);
  if (minWorkers > maxWorkers) {
    throw new TypeError(
      `Expected \`workers.minWorkers\` (${minWorkers}) to be at most \`workers.maxWorkers\` (${maxWorkers})`,
    );
  }
  return {
    script: o.script === undefined ? undefined : resolveScript(o.script),
    maxWorkers,
    minWorkers,
    maxQueueSize:
      o.maxQueueSize === undefined
        ? DEFAULT_MAX_QUEUE_SIZE
        : integer('workers.maxQueueSize', o.maxQueueSize, 0, max),
    resourceLimits: o.resourceLimits === undefined ? undefined : resolveLimits(o.resourceLimits),
    execArgv: o.execArgv === undefined ? undefined : resolveExecArgv(o.execArgv),
    workerData: o.workerData === undefined ? undefined : resolveWorkerData(o.workerData),
  };
}
