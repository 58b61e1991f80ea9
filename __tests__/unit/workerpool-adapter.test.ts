/**
 * The contract between lib/workers/workerpool-adapter.ts and the installed workerpool. Each test names one
 * assumption the adapter makes; after a workerpool upgrade, a failure here says which one no longer holds.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { bootstrapSource } from '../../lib/workers/bootstrap';
import {
  classify,
  PROTOCOL,
  startThreads,
  type Threads,
  type ThreadsOptions,
} from '../../lib/workers/workerpool-adapter';

const METHODS = join(__dirname, '..', 'fixtures', 'worker-methods.js');
const WORKERPOOL = dirname(require.resolve('workerpool/package.json'));

/** Fails with the assumption's name, so that an upgrade that breaks it says what to look at. */
function assume(holds: boolean, assumption: string): void {
  if (!holds) {
    throw new Error(
      `workerpool ${version()} breaks an assumption of lib/workers/workerpool-adapter.ts: ${assumption}`,
    );
  }
}

function version(): string {
  return (JSON.parse(readFileSync(join(WORKERPOOL, 'package.json'), 'utf8')) as { version: string }).version;
}

const source = (file: string) => readFileSync(join(WORKERPOOL, 'src', file), 'utf8');

const started: Threads[] = [];
function threads(options: Partial<ThreadsOptions> = {}): Threads {
  const t = startThreads(bootstrapSource(METHODS), {
    maxWorkers: 1,
    minWorkers: 0,
    workerData: undefined,
    resourceLimits: undefined,
    execArgv: undefined,
    terminateGraceMs: 100,
    onThreadGone: () => undefined,
    ...options,
  });
  started.push(t);
  return t;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((t) => t.terminate()));
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('workerpool, as the adapter relies on it', () => {
  it('is the minor version the adapter was tested with (package.json pins ~10.0.x)', () => {
    assume(/^10\.0\.\d+$/.test(version()), `the installed version is 10.0.x (found ${version()})`);
  });

  it("speaks the thread protocol the bootstrap answers in: 'ready', the terminate and cleanup messages", () => {
    const worker = source('worker.js');
    assume(
      worker.includes(`'${PROTOCOL.terminate}'`) || worker.includes(`"${PROTOCOL.terminate}"`),
      `a thread is ended with the message ${PROTOCOL.terminate}`,
    );
    assume(
      worker.includes(`'${PROTOCOL.cleanup}'`) || worker.includes(`"${PROTOCOL.cleanup}"`),
      `a call is cancelled with { id, method: ${PROTOCOL.cleanup} }`,
    );
    assume(
      /worker\.send\(\s*['"]ready['"]\s*\)/.test(worker),
      "a thread says 'ready' when its methods are registered",
    );
    const handler = source('WorkerHandler.js');
    assume(
      /response === ['"]ready['"]/.test(handler),
      "the pool reads 'ready' as the end of a thread's start-up",
    );
    assume(
      /result:\s*null,\s*error:/.test(worker) &&
        /task\.resolver\.reject\(objectToError\(response\.error\)\)/.test(handler),
      'an answer is { id, result, error } and a non-null error rejects the call',
    );
  });

  it("binds parentPort.on when its worker loads, so the bootstrap's wrapper sees every message", () => {
    assume(
      source('worker.js').includes('parentPort.on.bind(parentPort)'),
      "workerpool's worker listens through parentPort.on, read when it loads (after the bootstrap ran)",
    );
  });

  it("delivers a call's events to exec()'s `on` option: the bootstrap's word that the call began", async () => {
    const handler = source('WorkerHandler.js');
    assume(
      /response\.isEvent[\s\S]{0,200}task\.options\.on\(response\.payload\)/.test(handler),
      'a message { id, isEvent: true, payload } reaches the `on` option of call `id`',
    );
    const t = threads();
    const call = t.run('sleep', [50], undefined);
    assume(!call.started, 'a call has not begun before the thread says so');
    const end = Date.now() + 2000;
    while (!call.started && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 5));
    assume(call.started, 'the thread says it began a call while the call runs');
    await expect(call.result).resolves.toBe(50);
  });

  it('hands a call straight to a free thread: its own queue stays empty', async () => {
    const t = threads({ maxWorkers: 2 });
    const calls = [t.run('sleep', [100], undefined), t.run('sleep', [100], undefined)];
    // Both threads are starting with one call each; none is waiting in workerpool's queue.
    await new Promise((resolve) => setTimeout(resolve, 20));
    assume(t.threads().total === 2, 'exec() with a free slot creates a thread for the call at once');
    await expect(Promise.all(calls.map((c) => c.result))).resolves.toEqual([100, 100]);
    assume(t.threads().idle === 2, 'stats().idleWorkers counts the threads that finished their call');
  });

  it('cancel() rejects at once and ends the thread, and onTerminateWorker reports it gone', async () => {
    let gone = 0;
    const t = threads({ onThreadGone: () => gone++ });
    await t.run('add', [1, 1], undefined).result; // a started thread
    const spinning = t.run('spin', [], undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    spinning.cancel();
    const error = await rejection(spinning.result);
    assume(
      error instanceof Error && error.name === 'CancellationError',
      'cancel() rejects with a CancellationError',
    );
    const end = Date.now() + 2000;
    while (gone === 0 && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 10));
    assume(gone === 1, 'a thread ended to cancel its call is reported through onTerminateWorker');
    await expect(t.run('add', [2, 2], undefined).result).resolves.toBe(4);
  });

  it('rejects the call of a thread that exits with a TerminateError naming its exit code', async () => {
    const t = threads();
    const failure = classify(await rejection(t.run('exit', [7], undefined).result), 'exit');
    assume(
      failure.kind === 'exited' && failure.exitCode === 7,
      'a thread that exits rejects its call with TerminateError, whose message has "exitCode: `7`"',
    );
  });

  it("cuts a running call with 'Worker terminated' on terminate()", async () => {
    const t = threads();
    await t.run('add', [1, 1], undefined).result;
    const running = t.run('sleep', [5000], undefined);
    const terminating = t.terminate();
    const failure = classify(await rejection(running.result), 'sleep');
    await terminating;
    assume(
      failure.kind === 'shutdown',
      "terminate(true) rejects running calls with Error('Worker terminated')",
    );
  });

  it('rejects a method the script does not register with \'Unknown method "name"\'', async () => {
    const t = threads();
    const failure = classify(await rejection(t.run('nope', [], undefined).result), 'nope');
    assume(failure.kind === 'unknownMethod', 'an unregistered method is rejected with Unknown method "nope"');
  });

  it("rebuilds a method's error from its message, stack and own properties; a thrown string from its characters", async () => {
    const t = threads();
    const thrown = classify(await rejection(t.run('fail', ['out of range'], undefined).result), 'fail');
    assume(thrown.kind === 'thrown', 'what a method throws arrives as an Error holding its fields');
    if (thrown.kind !== 'thrown') return;
    expect(thrown.error).toMatchObject({ message: 'out of range', code: 'E_FIXTURE' });
    assume(
      String(thrown.error.stack).startsWith('RangeError: out of range'),
      "the thread's stack arrives (the class name is read from it)",
    );
    const text = classify(
      await rejection(t.run('throwString', ['plain words'], undefined).result),
      'throwString',
    );
    assume(
      text.kind === 'thrown' && text.error.message === 'plain words',
      'a thrown string arrives as an object of its characters',
    );
  });
});
