import { execFile } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import vm from 'node:vm';
import { MessageChannel } from 'node:worker_threads';
import {
  OverloadedError,
  WorkerArgumentsError,
  WorkerCrashedError,
  WorkerScriptError,
} from '../../lib/errors';
import type { WorkerOptions } from '../../lib/types';
import { WorkerPool, resolveWorkerOptions } from '../../lib/workers';

const FIXTURES = join(__dirname, '..', 'fixtures');
const fixture = (name: string): string => join(FIXTURES, name);
const METHODS = fixture('worker-methods.js');

const pools: WorkerPool[] = [];
function makePool(options: WorkerOptions = {}): WorkerPool {
  const resolved = resolveWorkerOptions({ script: METHODS, maxWorkers: 2, ...options });
  if (resolved === false) throw new Error('unreachable');
  const pool = new WorkerPool(resolved);
  pools.push(pool);
  return pool;
}

/** Threads alive in this process: each worker_threads Worker shows as one MessagePort resource. */
const threadHandles = (): number =>
  process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
}

/** Settles `promise` and returns what it rejected with (fails if it resolved). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** jest's `process` is a copy; rejections and warnings are emitted on the real one. */
const realProcess = new vm.Script('process').runInThisContext() as NodeJS.Process;
const trouble: unknown[] = [];
const onTrouble = (reason: unknown) => trouble.push(reason);
const onWarning = (warning: Error) => {
  if (warning.name === 'MaxListenersExceededWarning') trouble.push(warning);
};

let tmp: string;
let baselineThreads = 0;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'fanout-workers-'));
  realProcess.on('unhandledRejection', onTrouble);
  realProcess.on('uncaughtExceptionMonitor', onTrouble);
  realProcess.on('warning', onWarning);
  baselineThreads = threadHandles();
});

// Every test closes its pools here, then: no unhandled rejection, no uncaught error, no listener-leak
// warning, and no thread left.
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
  delete process.env.FANOUT_SPAWN_LOG;
  await sleep(10);
  expect(trouble.splice(0)).toEqual([]);
  expect(threadHandles()).toBe(baselineThreads);
});

afterAll(() => {
  realProcess.off('unhandledRejection', onTrouble);
  realProcess.off('uncaughtExceptionMonitor', onTrouble);
  realProcess.off('warning', onWarning);
  rmSync(tmp, { recursive: true, force: true });
});

describe('resolveWorkerOptions', () => {
  it('gives the defaults, with no script, for undefined', () => {
    const resolved = resolveWorkerOptions(undefined);
    expect(resolved).toEqual({
      script: undefined,
      maxWorkers: expect.any(Number),
      minWorkers: 0,
      maxQueueSize: 1024,
      resourceLimits: undefined,
      execArgv: undefined,
      workerData: undefined,
    });
    expect((resolved as { maxWorkers: number }).maxWorkers).toBeGreaterThanOrEqual(2);
  });

  it('passes false through', () => {
    expect(resolveWorkerOptions(false)).toBe(false);
  });

  it('accepts an absolute path, a file: URL (object or string) and a path relative to the cwd', () => {
    for (const script of [
      METHODS,
      pathToFileURL(METHODS),
      pathToFileURL(METHODS).href,
      relative(process.cwd(), METHODS),
    ]) {
      expect(resolveWorkerOptions({ script })).toMatchObject({ script: METHODS });
    }
  });

  it('rejects a script that does not exist when the options are resolved', () => {
    expect(() => resolveWorkerOptions({ script: join(FIXTURES, 'missing.js') })).toThrow(
      /^Expected `workers.script` to name an existing file, got `.*missing\.js` \(not found\)$/,
    );
    expect(() => resolveWorkerOptions({ script: FIXTURES })).toThrow(TypeError);
    expect(() => resolveWorkerOptions({ script: 42 })).toThrow(
      'Expected `workers.script` to be a path or a file: URL, got `42` (number)',
    );
  });

  it('names the field of an invalid value', () => {
    expect(() => resolveWorkerOptions({ maxWorkers: 0 })).toThrow(
      new TypeError('Expected `workers.maxWorkers` to be an integer >= 1, got `0` (number)'),
    );
    expect(() => resolveWorkerOptions({ maxQueueSize: -1 })).toThrow(
      'Expected `workers.maxQueueSize` to be an integer >= 0, got `-1` (number)',
    );
    expect(() => resolveWorkerOptions({ minWorkers: 1.5 })).toThrow('`workers.minWorkers`');
    expect(() => resolveWorkerOptions({ minWorkers: 3, maxWorkers: 2 })).toThrow(
      'Expected `workers.minWorkers` (3) to be at most `workers.maxWorkers` (2)',
    );
    expect(() => resolveWorkerOptions({ resourceLimits: { maxOldGenerationSizeMb: 0 } })).toThrow(
      'Expected `workers.resourceLimits.maxOldGenerationSizeMb` to be a number of MB > 0, got `0` (number)',
    );
    expect(() => resolveWorkerOptions('yes')).toThrow(
      'Expected `workers` to be a plain object or `false`, got `yes` (string)',
    );
  });

  it('takes a structured-cloneable workerData, and names the part that is not', () => {
    const workerData = { database: '/var/db.sqlite', limits: new Map([['rows', 10]]) };
    expect(resolveWorkerOptions({ workerData })).toMatchObject({ workerData });
    expect(() => resolveWorkerOptions({ workerData: { db: { onOpen: () => 1 } } })).toThrow(
      new TypeError(
        'Expected `workers.workerData` to be structured-cloneable: `workerData.db.onOpen` is a function',
      ),
    );
    expect(() => resolveWorkerOptions({ workerData: Symbol('x') })).toThrow(
      'Expected `workers.workerData` to be structured-cloneable: `workerData` is a symbol',
    );
  });

  it('suggests the intended key for a typo', () => {
    expect(() => resolveWorkerOptions({ scirpt: METHODS })).toThrow(
      new TypeError('Unknown option `workers.scirpt`. Did you mean `workers.script`?'),
    );
    expect(() => resolveWorkerOptions({ resourceLimits: { maxOldGenSizeMb: 8 } })).toThrow(
      /^Unknown option `workers.resourceLimits.maxOldGenSizeMb`/,
    );
  });
});

describe('WorkerPool', () => {
  it('starts no thread until the first call', async () => {
    const pool = makePool({ minWorkers: 1 });
    await sleep(50);
    expect(threadHandles()).toBe(baselineThreads);
    expect(pool.stats()).toEqual({ busy: 0, idle: 0, pending: 0, shed: 0, terminated: 0, crashed: 0 });
    await expect(pool.exec('add', [2, 3], { task: 'sum' })).resolves.toBe(5);
    expect(threadHandles()).toBeGreaterThan(baselineThreads);
  });

  it("returns a method's result", async () => {
    const pool = makePool();
    await expect(pool.exec('add', [2, 3], { task: 'sum' })).resolves.toBe(5);
    await expect(
      pool.exec('echo', [{ a: [1, 'x', null], d: new Date(0) }], { task: 'echo' }),
    ).resolves.toEqual({
      a: [1, 'x', null],
      d: new Date(0),
    });
    await expect(pool.exec('sleep', [20], { task: 'nap' })).resolves.toBe(20);
    expect(pool.stats()).toMatchObject({ busy: 0, pending: 0, shed: 0, terminated: 0, crashed: 0 });
  });

  it('loads an ES module script', async () => {
    const pool = makePool({ script: fixture('worker-methods.mjs') });
    await expect(pool.exec('add', [1, 1], { task: 'sum' })).resolves.toBe(2);
  });

  it('loads an ES module script with top-level await (ERR_REQUIRE_ASYNC_MODULE), which awaits before registering', async () => {
    const pool = makePool({ script: fixture('worker-tla.mjs'), workerData: { database: 'db.sqlite' } });
    await expect(pool.exec('add', [2, 2], { task: 'sum' })).resolves.toBe(4);
    await expect(pool.exec('connection', [], { task: 'db' })).resolves.toEqual({
      database: 'db.sqlite',
      openedAt: 'before worker()',
    });
  });

  it("loads the README's ES-module example, which awaits a file named by workerData", async () => {
    const config = join(tmp, 'app.json');
    writeFileSync(config, JSON.stringify({ region: 'north' }));
    const pool = makePool({
      script: join(__dirname, '..', '..', 'examples', 'worker-threads', 'worker.mjs'),
      workerData: { config },
    });
    await expect(pool.exec('setting', ['region'], { task: 'setting' })).resolves.toBe('north');
  });

  it('loads a .js ES module of a "type": "module" package, with top-level await', async () => {
    const pool = makePool({ script: fixture('worker-module/worker.js') });
    await expect(pool.exec('status', [], { task: 'status' })).resolves.toBe('loaded');
  });

  it('reports an ES module whose top-level await rejects as a broken script', async () => {
    const script = join(tmp, 'tla-fails.mjs');
    writeFileSync(script, "await Promise.resolve();\nthrow new Error('cannot connect');\n");
    const pool = makePool({ script });
    const error = await rejection(pool.exec('add', [1, 2], { task: 'sum' }));
    expect(error).toBeInstanceOf(WorkerScriptError);
    expect((error as Error).message).toBe(
      'The worker script `tla-fails.mjs` failed to load: Error: cannot connect (at tla-fails.mjs:2:7)',
    );
  });

  it("gives every thread the user's workerData as worker_threads.workerData, and nothing else", async () => {
    const workerData = { database: '/srv/app.db', when: new Date(0), tags: new Set(['a']) };
    const pool = makePool({ workerData });
    await expect(pool.exec('workerData', [], { task: 'config' })).resolves.toEqual(workerData);
    const none = makePool();
    await expect(none.exec('workerData', [], { task: 'config' })).resolves.toBeUndefined();
  });

  it('loads a TypeScript script from its source with a --require hook in execArgv (what the .ts hint says)', async () => {
    const pool = makePool({
      script: fixture('worker-typed.ts'),
      execArgv: ['--require', require.resolve('tsx/cjs')],
    });
    await expect(pool.exec('square', [7], { task: 'square' })).resolves.toBe(49);
  });

  it('tells how to run a .ts worker script that fails to load: compile it or give the threads a loader', async () => {
    const pool = makePool({ script: fixture('worker-typed.ts'), execArgv: [] });
    const error = await rejection(pool.exec('square', [7], { task: 'square' }));
    expect(error).toBeInstanceOf(WorkerScriptError);
    expect((error as Error).message).toMatch(/^The worker script `worker-typed.ts` failed to load: /);
    expect((error as Error).message).toContain(
      '. It is a TypeScript file: compile it and point `workers.script` at the `.js` output, or give the threads ' +
        "tsx's require hook: `workers: { script, execArgv: ['--require', 'tsx/cjs'] }`",
    );
  });

  it('transfers the buffers listed in `transfer`', async () => {
    const pool = makePool();
    const buffer = new ArrayBuffer(1024);
    await expect(pool.exec('byteLength', [buffer], { task: 'upload', transfer: [buffer] })).resolves.toBe(
      1024,
    );
    expect(buffer.byteLength).toBe(0); // detached: moved, not copied
  });

  it("rejects with the worker's error: its class, message and code, without the script's path", async () => {
    const pool = makePool();
    const error = (await rejection(pool.exec('fail', ['out of range'], { task: 'calc' }))) as Error & {
      code?: string;
    };
    expect(error).toBeInstanceOf(RangeError);
    expect(error.name).toBe('RangeError');
    expect(error.message).toBe('out of range');
    expect(error.code).toBe('E_FIXTURE');

    const async = await rejection(pool.exec('rejectLater', ['later'], { task: 'calc' }));
    expect(async).toMatchObject({ name: 'Error', message: 'later' });

    const thrownString = await rejection(pool.exec('throwString', ['plain words'], { task: 'calc' }));
    expect(thrownString).toMatchObject({ name: 'Error', message: 'plain words' });

    const withPath = (await rejection(pool.exec('failWithPath', [], { task: 'calc' }))) as Error;
    expect(withPath.message).toBe('cannot read worker-methods.js next to data.db');
    expect(withPath.message).not.toContain(FIXTURES);
    expect(pool.stats()).toMatchObject({ crashed: 0, terminated: 0 });
  });

  it('rejects a method the script does not register with a WorkerScriptError', async () => {
    const pool = makePool();
    const error = await rejection(pool.exec('nope', [], { task: 'lookup' }));
    expect(error).toBeInstanceOf(WorkerScriptError);
    expect((error as Error).message).toBe(
      'Task `lookup` calls `nope`, which the worker script `worker-methods.js` does not register with ' +
        'workerpool.worker({ ... })',
    );
    // The message names the task: so does `error.tasks` (it was empty).
    expect((error as WorkerScriptError).tasks).toEqual(['lookup']);
    await expect(pool.exec('add', [1, 2], { task: 'sum' })).resolves.toBe(3);
  });

  it('says "did you mean" for a misspelt method, from the names the script registers, and keeps serving', async () => {
    const pool = makePool({ maxWorkers: 1 });
    for (const task of ['sum', 'again']) {
      // The second time the names are known already.
      const error = await rejection(pool.exec('adn', [1, 2], { task }));
      expect(error).toBeInstanceOf(WorkerScriptError);
      expect(error).toMatchObject({ status: 500, tasks: [task] });
      expect((error as Error).message).toBe(
        `Task \`${task}\` calls \`adn\`, which the worker script \`worker-methods.js\` does not register with ` +
          'workerpool.worker({ ... }). Did you mean `add`?',
      );
    }
    await expect(pool.exec('add', [1, 2], { task: 'sum' })).resolves.toBe(3);
    expect(pool.stats()).toMatchObject({ busy: 0, pending: 0, crashed: 0, terminated: 0 });
  });

  it('rejects with a WorkerScriptError when no script is set', async () => {
    const resolved = resolveWorkerOptions(undefined);
    if (resolved === false) throw new Error('unreachable');
    const pool = new WorkerPool(resolved);
    pools.push(pool);
    const error = await rejection(pool.exec('add', [1, 2], { task: 'sum' }));
    expect(error).toBeInstanceOf(WorkerScriptError);
    expect((error as Error).message).toContain('`workers.script` is not set');
    expect(threadHandles()).toBe(baselineThreads);
  });

  it('cuts a runaway loop on abort, replaces the thread and keeps serving at full size', async () => {
    const pool = makePool({ maxWorkers: 2 });
    const controller = new AbortController();
    const reason = new Error('deadline');
    const started = performance.now();
    setTimeout(() => controller.abort(reason), 100);
    await expect(pool.exec('spin', [], { task: 'loop', signal: controller.signal })).rejects.toBe(reason);
    expect(performance.now() - started).toBeLessThan(1000); // at the abort, not when the thread dies
    await until(() => pool.stats().terminated === 1); // once its short grace is over

    await expect(pool.exec('add', [1, 2], { task: 'next' })).resolves.toBe(3);
    // The spinning thread is gone within a few hundred ms, and two threads serve at once again.
    await until(() => pool.stats().busy === 0);
    const ids = await Promise.all([
      pool.exec('sleepThenThreadId', [100], { task: 'a' }),
      pool.exec('sleepThenThreadId', [100], { task: 'b' }),
    ]);
    expect(new Set(ids).size).toBe(2);
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 2, pending: 0, terminated: 1, crashed: 0 });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('cancels a running async task on abort and counts the terminated thread', async () => {
    const pool = makePool({ maxWorkers: 1 });
    await pool.exec('add', [0, 0], { task: 'warm-up' }); // a started thread: the call below really runs
    const controller = new AbortController();
    const running = pool.exec('sleep', [5000], { task: 'slow', signal: controller.signal });
    await until(() => pool.stats().busy === 1);
    await sleep(50);
    controller.abort();
    const error = await rejection(running);
    expect(error).toBe(controller.signal.reason);
    expect((error as Error).name).toBe('AbortError');
    await until(() => pool.stats().terminated === 1);
    await expect(pool.exec('add', [1, 2], { task: 'next' })).resolves.toBe(3);
  });

  it('shares one abort listener among the calls of one signal, and removes it with the last', async () => {
    const pool = makePool({ maxWorkers: 2 });
    const done = new AbortController();
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => pool.exec('add', [i, 1], { task: `t${i}`, signal: done.signal })),
    );
    expect(results).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(getEventListeners(done.signal, 'abort')).toHaveLength(0);

    const cut = new AbortController();
    const calls = Array.from({ length: 30 }, (_, i) =>
      rejection(pool.exec('sleep', [5000], { task: `t${i}`, signal: cut.signal })),
    );
    expect(getEventListeners(cut.signal, 'abort')).toHaveLength(1);
    await until(() => pool.stats().busy === 2);
    cut.abort();
    for (const error of await Promise.all(calls)) expect(error).toBe(cut.signal.reason);
    expect(getEventListeners(cut.signal, 'abort')).toHaveLength(0);
    expect(pool.stats().pending).toBe(0);
    await until(() => pool.stats().terminated === 2);
    await expect(pool.exec('add', [1, 2], { task: 'next' })).resolves.toBe(3);
  });

  it('keeps the thread of a cancelled call that finishes within its grace: no thread start, a warm JIT', async () => {
    const pool = makePool({ maxWorkers: 1 });
    const first = await pool.exec('threadId', [], { task: 'warm-up' });
    const log = join(tmp, 'grace.log');
    writeFileSync(log, '');
    const controller = new AbortController();
    // Begins (writes `late:start`), works 30 ms, ends (writes `late:end`): within the 50 ms grace of its abort.
    const almostDone = pool.exec('blockBetweenMarks', [30, log, 'late'], {
      task: 'late',
      signal: controller.signal,
    });
    await until(() => readFileSync(log, 'utf8') === 'late:start\n', 2000);
    await sleep(5); // the thread's word that it began the call, posted before the mark, is read by now
    controller.abort(new Error('deadline'));
    await expect(almostDone).rejects.toThrow('deadline'); // at once: the answer is given up
    await until(() => pool.stats().busy === 0);
    expect(readFileSync(log, 'utf8')).toBe('late:start\nlate:end\n');
    await expect(pool.exec('threadId', [], { task: 'next' })).resolves.toBe(first);
    expect(pool.stats()).toMatchObject({ terminated: 0, crashed: 0 });
  });

  it('rejects at once with the reason of an already aborted signal, queueing nothing', async () => {
    const pool = makePool();
    const reason = new Error('too late');
    const error = await rejection(
      pool.exec('mark', [join(tmp, 'never'), 'x'], { task: 'late', signal: AbortSignal.abort(reason) }),
    );
    expect(error).toBe(reason);
    expect(pool.stats()).toEqual({ busy: 0, idle: 0, pending: 0, shed: 0, terminated: 0, crashed: 0 });
    expect(threadHandles()).toBe(baselineThreads);
  });

  it('never starts a queued task whose signal aborts, and frees its queue place at once', async () => {
    const pool = makePool({ maxWorkers: 1 });
    const log = join(tmp, 'queued.log');
    writeFileSync(log, '');
    const first = pool.exec('blockThenMark', [300, log, 'first'], { task: 'first' });
    const controller = new AbortController();
    const queued = pool.exec('mark', [log, 'aborted'], { task: 'queued', signal: controller.signal });
    const after = pool.exec('mark', [log, 'after'], { task: 'after' });
    expect(pool.stats().pending).toBe(2);

    controller.abort(new Error('client went away'));
    expect(pool.stats().pending).toBe(1);
    await expect(queued).rejects.toThrow('client went away');
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);

    await expect(first).resolves.toBe('first');
    await expect(after).resolves.toBe('after');
    expect(readFileSync(log, 'utf8')).toBe('first\nafter\n');
    // Dropped from the queue, not cancelled on a thread.
    expect(pool.stats()).toMatchObject({ terminated: 0, crashed: 0 });
  });

  it("gives a free thread to the oldest request's call, not to the call queued first", async () => {
    const pool = makePool({ maxWorkers: 1 });
    const log = join(tmp, 'arrival.log');
    writeFileSync(log, '');
    const opts = (task: string, arrival: number, lane: number) => ({ task, arrival, lane });
    const first = pool.exec('blockThenMark', [200, log, 'running'], opts('running', 10, 1));
    const calls = [
      pool.exec('mark', [log, 'young'], opts('young', 50, 5)),
      pool.exec('mark', [log, 'old'], opts('old', 20, 2)),
      pool.exec('mark', [log, 'young again'], opts('young again', 50, 5)),
      pool.exec('mark', [log, 'old again'], opts('old again', 20, 2)),
    ];
    expect(pool.stats()).toMatchObject({ busy: 1, pending: 4 });
    await Promise.all([first, ...calls]);
    expect(readFileSync(log, 'utf8')).toBe('running\nold\nold again\nyoung\nyoung again\n');
  });

  it('never runs a call aborted while the thread it was handed to is still starting', async () => {
    const pool = makePool({ maxWorkers: 1 });
    const log = join(tmp, 'starting.log');
    writeFileSync(log, '');
    const controller = new AbortController();
    // The first call starts the pool's first thread; it is handed to that thread before the thread is ready.
    const call = pool.exec('mark', [log, 'aborted'], { task: 'early', signal: controller.signal });
    controller.abort(new Error('deadline'));
    await expect(call).rejects.toThrow('deadline');
    await expect(pool.exec('mark', [log, 'next'], { task: 'next' })).resolves.toBe('next');
    expect(readFileSync(log, 'utf8')).toBe('next\n');
    // The starting thread is ended with its call (workerpool cancels a handed call by terminating its thread).
    expect(pool.stats()).toMatchObject({ terminated: 1, crashed: 0 });
  });

  it('fails only the task whose thread exits; the other thread and the next task succeed', async () => {
    const pool = makePool({ maxWorkers: 2 });
    const [crashed, other] = await Promise.allSettled([
      pool.exec('exit', [7], { task: 'doomed' }),
      pool.exec('sleep', [200], { task: 'bystander' }),
    ]);
    expect(crashed.status).toBe('rejected');
    const error = (crashed as PromiseRejectedResult).reason as WorkerCrashedError;
    expect(error).toBeInstanceOf(WorkerCrashedError);
    expect(error.message).toBe('Task `doomed` failed: its worker thread crashed and was replaced');
    expect(error.tasks).toEqual(['doomed']);
    expect((error.cause as Error).message).toBe('the worker thread exited with code 7');
    expect(other).toEqual({ status: 'fulfilled', value: 200 });
    await expect(pool.exec('add', [1, 2], { task: 'next' })).resolves.toBe(3);
    expect(pool.stats()).toMatchObject({ crashed: 1, terminated: 0 });
  });

  it('types an uncaught error in a callback of the worker as a crash', async () => {
    const pool = makePool();
    const error = await rejection(pool.exec('throwLater', [], { task: 'timer' }));
    expect(error).toBeInstanceOf(WorkerCrashedError);
    expect(((error as Error).cause as Error).message).toBe('uncaught in a timer');
    await expect(pool.exec('add', [1, 2], { task: 'next' })).resolves.toBe(3);
    expect(pool.stats().crashed).toBe(1);
  });

  it('types running out of resourceLimits memory as a crash and replaces the thread', async () => {
    const pool = makePool({ maxWorkers: 1, resourceLimits: { maxOldGenerationSizeMb: 32 } });
    const error = await rejection(pool.exec('hog', [], { task: 'greedy' }));
    expect(error).toBeInstanceOf(WorkerCrashedError);
    expect((error as Error).cause).toMatchObject({ code: 'ERR_WORKER_OUT_OF_MEMORY' });
    await expect(pool.exec('add', [1, 2], { task: 'next' })).resolves.toBe(3);
    expect(pool.stats().crashed).toBe(1);
  });

  it('sheds with an OverloadedError when the queue is full, never throwing', async () => {
    const pool = makePool({ maxWorkers: 1, maxQueueSize: 2 });
    const running = pool.exec('sleep', [200], { task: 'running' });
    const waiting = [pool.exec('add', [1, 1], { task: 'q1' }), pool.exec('add', [2, 2], { task: 'q2' })];
    let shed: Promise<unknown> | undefined;
    expect(() => {
      shed = pool.exec('add', [3, 3], { task: 'extra' });
    }).not.toThrow();
    const error = await rejection(shed!);
    expect(error).toBeInstanceOf(OverloadedError);
    expect(error).toMatchObject({ status: 503, tasks: ['extra'], headers: { 'Retry-After': '1' } });
    expect((error as Error).message).toBe(
      'Task `extra` shed: the worker queue is full (1/1 threads busy, 2/2 queued)',
    );
    await expect(running).resolves.toBe(200);
    await expect(Promise.all(waiting)).resolves.toEqual([2, 4]);
    await expect(pool.exec('add', [3, 3], { task: 'extra' })).resolves.toBe(6);
  });

  it('with maxQueueSize 0 runs what finds a free thread and sheds what would wait', async () => {
    const pool = makePool({ maxWorkers: 1, maxQueueSize: 0 });
    const running = pool.exec('sleep', [100], { task: 'running' });
    await expect(pool.exec('add', [1, 1], { task: 'waits' })).rejects.toBeInstanceOf(OverloadedError);
    await expect(running).resolves.toBe(100);
    await expect(pool.exec('add', [1, 1], { task: 'free' })).resolves.toBe(2);
  });

  it('rejects arguments that cannot be cloned before queueing them, naming the task', async () => {
    const pool = makePool();
    const socket = new Socket();
    const { port1, port2 } = new MessageChannel();
    const cases: [unknown[], { transfer?: ArrayBuffer[] }, string][] = [
      [[{ onDone: () => 1 }], {}, '`args[0].onDone` is a function'],
      [[1, [Symbol('s')]], {}, '`args[1][0]` is a symbol'],
      [[socket], {}, '`args[0]` is a Socket, which cannot be cloned'],
      [[port1], {}, 'MessagePort'],
      [[{ data: new ArrayBuffer(8), cb: () => 1 }], { transfer: [] }, '`args[0].cb` is a function'],
      [
        [new Uint8Array(8)],
        { transfer: [new Uint8Array(8) as unknown as ArrayBuffer] },
        'list its `.buffer`',
      ],
      [[new Error('failed', { cause: () => 1 })], {}, '`args[0].cause` is a function'],
      [[Object.assign([1, 2], { format: () => 1 })], {}, '`args[0].format` is a function'],
      [
        [new Map([['k', Promise.resolve()]])],
        {},
        '`args[0].<map entry>` is a Promise, which cannot be cloned',
      ],
      [
        [
          {
            get broken() {
              throw new Error('getter');
            },
          },
        ],
        {},
        'reading them threw Error: getter',
      ],
    ];
    try {
      for (const [args, options, detail] of cases) {
        const error = await rejection(pool.exec('echo', args, { task: 'send', ...options }));
        // A programming error, 500, naming the task and the argument (it was a TypeError, which all() made a 502).
        expect(error).toBeInstanceOf(WorkerArgumentsError);
        expect(error).toMatchObject({ status: 500, tasks: ['send'] });
        expect((error as Error).message).toMatch(
          /^Task `send` cannot send its arguments to a worker thread: /,
        );
        expect((error as Error).message).toContain(detail);
      }
      const buffer = new ArrayBuffer(8);
      const twice = await rejection(
        pool.exec('echo', [buffer], { task: 'send', transfer: [buffer, buffer] }),
      );
      expect((twice as Error).message).toContain('`transfer[1]` is listed twice');
      expect(buffer.byteLength).toBe(8); // not detached by the check
    } finally {
      socket.destroy();
      port1.close();
      port2.close();
    }
    expect(pool.stats()).toMatchObject({ busy: 0, pending: 0 });
    await expect(pool.exec('add', [1, 2], { task: 'sum' })).resolves.toBe(3);
  });

  it('fails fast on a script that throws while loading, without respawning threads', async () => {
    const spawnLog = join(tmp, 'spawns.log');
    writeFileSync(spawnLog, '');
    process.env.FANOUT_SPAWN_LOG = spawnLog;
    const pool = makePool({ script: fixture('worker-throws-on-load.js'), maxWorkers: 2 });
    const first = await rejection(pool.exec('never', [], { task: 'first' }));
    expect(first).toBeInstanceOf(WorkerScriptError);
    expect((first as Error).message).toBe(
      'The worker script `worker-throws-on-load.js` failed to load: Error: cannot open the database ' +
        '(at worker-throws-on-load.js:8:7)',
    );
    const started = performance.now();
    const later = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) => pool.exec('never', [], { task: `t${i}` })),
    );
    expect(performance.now() - started).toBeLessThan(200);
    for (const result of later) expect(result).toEqual({ status: 'rejected', reason: first });
    await sleep(100);
    expect(readFileSync(spawnLog, 'utf8').trim().split('\n')).toHaveLength(1);
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 0, pending: 0, crashed: 0 });
  });

  it('reports a syntax error in the script with its location', async () => {
    const script = join(tmp, 'syntax-error.js');
    writeFileSync(script, "'use strict';\nconst broken = ;\n");
    const pool = makePool({ script });
    const error = await rejection(pool.exec('add', [1, 2], { task: 'sum' }));
    expect(error).toBeInstanceOf(WorkerScriptError);
    expect((error as Error).message).toBe(
      "The worker script `syntax-error.js` failed to load: SyntaxError: Unexpected token ';' (at syntax-error.js:2)",
    );
    expect((error as Error).message).not.toContain(tmp);
    await expect(pool.exec('add', [1, 2], { task: 'again' })).rejects.toBe(error);
  });

  it('treats process.exit() while loading, or no registered method, as a broken script', async () => {
    const spawnLog = join(tmp, 'exits.log');
    writeFileSync(spawnLog, '');
    process.env.FANOUT_SPAWN_LOG = spawnLog;
    const exits = makePool({ script: fixture('worker-exits-on-load.js') });
    const error = await rejection(exits.exec('add', [1, 2], { task: 'sum' }));
    expect(error).toBeInstanceOf(WorkerScriptError);
    expect((error as Error).message).toBe(
      'The worker script `worker-exits-on-load.js` called process.exit() while loading',
    );
    await expect(exits.exec('add', [1, 2], { task: 'again' })).rejects.toBe(error);
    expect(readFileSync(spawnLog, 'utf8').trim().split('\n')).toHaveLength(1);
    expect(exits.stats().crashed).toBe(0);

    const unregistered = makePool({ script: fixture('worker-unregistered.js') });
    await expect(unregistered.exec('add', [1, 2], { task: 'sum' })).rejects.toThrow(
      new WorkerScriptError(
        'The worker script `worker-unregistered.js` loaded but registers no methods: call workerpool.worker({ ... }) in it',
      ),
    );
  });

  it('close() rejects queued and running tasks, ends every thread, and later calls reject at once', async () => {
    const pool = makePool({ maxWorkers: 1 });
    const log = join(tmp, 'closed.log');
    writeFileSync(log, '');
    const running = pool.exec('spin', [], { task: 'running' });
    const queued = [1, 2, 3].map((i) => rejection(pool.exec('mark', [log, `q${i}`], { task: `q${i}` })));
    const runningError = rejection(running);
    await until(() => pool.stats().busy === 1);
    expect(pool.stats().pending).toBe(3);

    const started = performance.now();
    await pool.close();
    expect(performance.now() - started).toBeLessThan(2000);
    for (const [i, error] of (await Promise.all(queued)).entries()) {
      expect(error).toBeInstanceOf(OverloadedError);
      expect((error as Error).message).toBe(`Task \`q${i + 1}\` shed: the worker pool is closed`);
    }
    expect(await runningError).toMatchObject({
      message: 'Task `running` shed: the worker pool closed while it ran',
    });
    expect(pool.stats()).toEqual({ busy: 0, idle: 0, pending: 0, shed: 0, terminated: 0, crashed: 0 });
    expect(threadHandles()).toBe(baselineThreads);
    expect(readFileSync(log, 'utf8')).toBe('');

    await expect(pool.exec('add', [1, 2], { task: 'late' })).rejects.toThrow(
      'Task `late` shed: the worker pool is closed',
    );
    await expect(pool.close()).resolves.toBeUndefined();
  });

  it('lets the process exit after close()', async () => {
    const program = `
      const { WorkerPool, resolveWorkerOptions } = require(${JSON.stringify(join(__dirname, '../../lib/workers/index.ts'))});
      const pool = new WorkerPool(resolveWorkerOptions({ script: ${JSON.stringify(METHODS)}, maxWorkers: 2 }));
      const calls = [pool.exec('sleep', [50], { task: 'a' }), pool.exec('spin', [], { task: 'b' })];
      for (let i = 0; i < 5; i++) calls.push(pool.exec('add', [i, i], { task: 'q' + i }));
      Promise.allSettled(calls).then((r) => console.log(r.map((x) => x.status).join(',')));
      // One thread spins for ever; close() once the other has served the queue.
      Promise.all(calls.slice(2)).then(() => pool.close());
    `;
    const started = performance.now();
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', '-e', program],
        { timeout: 15000, cwd: join(__dirname, '../..') },
        (error, out) => (error ? reject(error) : resolve(out)),
      );
    });
    expect(stdout.trim()).toBe('fulfilled,rejected,fulfilled,fulfilled,fulfilled,fulfilled,fulfilled');
    expect(performance.now() - started).toBeLessThan(12000);
  });
});
