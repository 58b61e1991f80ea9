/**
 * The one file that knows `workerpool`: its API, the shape of its errors and the messages its threads speak.
 * The package queues worker calls itself (pool.ts) and hands one to workerpool only when a thread is free, so
 * what is used here is small: `pool()`, `exec()`, `cancel()`, `stats()`, `terminate()`, `onTerminateWorker`,
 * `TerminateError`, three message strings and three error messages. Each is an assumption that
 * `__tests__/unit/workerpool-adapter.test.ts` checks by name against the installed workerpool; the range in
 * package.json is pinned to the minor version those tests passed on.
 */
import { pool as createPool, TerminateError, type Pool } from 'workerpool';
import type { Transferable, WorkerResourceLimits } from '../types';

/**
 * Messages of workerpool's thread protocol (its `src/worker.js`): a thread says `ready` once its script
 * called `workerpool.worker()`; the pool sends `terminate` to end a thread and `{ id, method: cleanup }` to
 * cancel call `id`; a call is `{ id, method, params }` and its answer `{ id, result, error }`.
 */
export const PROTOCOL = {
  ready: 'ready',
  terminate: '__workerpool-terminate__',
  cleanup: '__workerpool-cleanup__',
} as const;

/** The payload of the event a thread sends when a call reaches its script (`{ id, isEvent: true, payload }`). */
const STARTED = 'expressFanoutStarted';

/**
 * Thread-side JS source (for the bootstrap, which runs before the user's script): wraps `parentPort.on` so that
 * workerpool's worker, which binds it when it loads, never sees a call whose cancellation came first. That
 * happens to a call handed to a thread that is still starting: workerpool holds the call in the thread's
 * start-up queue but sends the cancellation at once, so the thread reads the cancellation, then the call.
 * Ids of one thread only grow, so a cancellation for an id above every call seen is for a call not yet here.
 * Each call that goes on to the script is announced to the pool first, as a workerpool event of that call.
 */
export function dropCancelledCallsSource(): string {
  return `
const listen = parentPort.on;
let lastCallId = 0;
const cancelledCalls = new Set();
parentPort.on = parentPort.addListener = function (event, listener) {
  if (event !== 'message') return listen.call(this, event, listener);
  return listen.call(this, event, function (message) {
    if (message !== null && typeof message === 'object' && typeof message.id === 'number') {
      if (message.method === ${JSON.stringify(PROTOCOL.cleanup)}) {
        if (message.id > lastCallId) cancelledCalls.add(message.id);
      } else {
        lastCallId = Math.max(lastCallId, message.id);
        if (cancelledCalls.delete(message.id)) return;
        if (typeof message.method === 'string') {
          parentPort.postMessage({ id: message.id, isEvent: true, payload: ${JSON.stringify(STARTED)} });
        }
      }
    }
    return listener.call(this, message);
  });
};
`;
}

/**
 * Thread-side JS source of a function `refuseAll(failure)`: from now on the thread answers every call with
 * the error `failure` (an object with `name`, `message`, `stack`) and exits when told to, then says `ready`.
 * The bootstrap uses it when the script failed to load, so that the pool learns why instead of respawning.
 */
export function refuseAllSource(): string {
  return `
function refuseAll(failure) {
  parentPort.removeAllListeners('message');
  listen.call(parentPort, 'message', (request) => {
    if (request === ${JSON.stringify(PROTOCOL.terminate)}) return exit.call(process, 0);
    if (request === null || typeof request !== 'object' || request.id === undefined) return;
    if (request.method === ${JSON.stringify(PROTOCOL.cleanup)}) return;
    parentPort.postMessage({ id: request.id, method: request.method, result: null, error: failure });
  });
  parentPort.postMessage(${JSON.stringify(PROTOCOL.ready)});
}
`;
}

export interface ThreadsOptions {
  maxWorkers: number;
  minWorkers: number;
  workerData: unknown;
  resourceLimits: WorkerResourceLimits | undefined;
  execArgv: string[] | undefined;
  /** How long a thread gets to answer a cancellation, then to exit, before it is killed. */
  terminateGraceMs: number;
  /** A thread has gone (terminated after a cancellation, crashed, or ended by `terminate()`). */
  onThreadGone: () => void;
}

/** One call handed to a thread. */
export interface ThreadCall {
  /** Settles with the method's result, or what workerpool rejected the call with (see {@link classify}). */
  readonly result: Promise<unknown>;
  /** Cancels the call: a running one gets its thread terminated (and replaced on the next call). */
  cancel(): void;
  /** The thread has begun the call (false while it waits in a thread that is still starting). */
  readonly started: boolean;
}

/** workerpool's pool, reduced to what the package uses. */
export interface Threads {
  /**
   * Hands a call to a thread. The caller makes sure one is free: workerpool's own queue stays empty.
   * `onBegin` is called when the thread begins the call (after a thread start, if one was needed).
   */
  run(
    method: string,
    args: readonly unknown[],
    transfer: readonly Transferable[] | undefined,
    onBegin?: () => void,
  ): ThreadCall;
  /** Threads started (busy or idle) and the idle ones. */
  threads(): { total: number; idle: number };
  /** Ends every thread now; resolves once they have exited (never rejects). */
  terminate(): Promise<void>;
}

/** Starts a workerpool pool whose threads run `source` (eval'd JS), creating no thread before the first call. */
export function startThreads(source: string, options: ThreadsOptions): Threads {
  const pool: Pool = createPool(source, {
    workerType: 'thread',
    maxWorkers: options.maxWorkers,
    ...(options.minWorkers > 0 ? { minWorkers: options.minWorkers } : {}),
    workerTerminateTimeout: options.terminateGraceMs,
    onTerminateWorker: () => options.onThreadGone(),
    workerThreadOpts: {
      eval: true,
      workerData: options.workerData,
      ...(options.resourceLimits ? { resourceLimits: { ...options.resourceLimits } } : {}),
      ...(options.execArgv ? { execArgv: [...options.execArgv] } : {}),
    },
  });
  return {
    run(method, args, transfer, onBegin) {
      let started = false;
      const on = (payload: unknown): void => {
        if (payload !== STARTED || started) return;
        started = true;
        onBegin?.();
      };
      const promise = pool.exec(method, args as unknown[], {
        on,
        ...(transfer ? { transfer: transfer as object[] } : {}),
      });
      // A native promise: what settles it runs on a later microtask, never inside workerpool's own handlers.
      const result = new Promise<unknown>((resolve, reject) => {
        promise.then(resolve, reject);
      });
      return {
        result,
        cancel: () => void promise.cancel(),
        get started() {
          return started;
        },
      };
    },
    threads() {
      const s = pool.stats();
      return { total: s.totalWorkers, idle: s.idleWorkers };
    },
    terminate() {
      return new Promise<void>((resolve) => {
        try {
          pool.terminate(true).then(
            () => resolve(),
            () => resolve(),
          );
        } catch {
          resolve();
        }
      });
    },
  };
}

/** What a call handed to workerpool was rejected with, in the package's terms. */
export type ThreadFailure =
  /** The thread exited or crashed while running it (`process.exit`, an uncaught error, `resourceLimits`). */
  | { kind: 'exited'; exitCode: number | undefined; cause: unknown }
  /** `terminate()` cut it. */
  | { kind: 'shutdown' }
  /** The script does not register the method. */
  | { kind: 'unknownMethod' }
  /** The method threw or rejected: the thread's error as fields (`name`, `message`, `stack`, `code` …). */
  | { kind: 'thrown'; error: Record<string, unknown> };

/** Reads what workerpool rejected a call to `method` with. */
export function classify(error: unknown, method: string): ThreadFailure {
  if (error instanceof TerminateError) {
    const exitCode = /exitCode: `(-?\d+)`/.exec(error.message)?.[1];
    return {
      kind: 'exited',
      exitCode: exitCode === undefined ? undefined : Number(exitCode),
      cause: error.cause,
    };
  }
  if (
    error instanceof Error &&
    (error.message === 'Pool terminated' || error.message === 'Worker terminated')
  ) {
    return { kind: 'shutdown' };
  }
  if (error instanceof Error && error.message === `Unknown method "${method}"`)
    return { kind: 'unknownMethod' };
  if (typeof error !== 'object' || error === null)
    return { kind: 'thrown', error: { message: String(error) } };
  const fields: Record<string, unknown> = {};
  const keys = Object.keys(error);
  if (keys.length > 0 && keys.every((key) => /^\d+$/.test(key))) {
    // A thrown string: workerpool's JSON round trip turns it into an error holding one property per character.
    fields.message = keys.map((key) => String((error as Record<string, unknown>)[key])).join('');
    return { kind: 'thrown', error: fields };
  }
  for (const key of keys) fields[key] = (error as Record<string, unknown>)[key];
  // workerpool copies own properties only: `name` (inherited, as on a TypeError) survives in the stack.
  if (!('message' in fields)) fields.message = (error as { message?: unknown }).message ?? '';
  if (!('stack' in fields) && typeof (error as { stack?: unknown }).stack === 'string') {
    fields.stack = (error as { stack: string }).stack;
  }
  return { kind: 'thrown', error: fields };
}
