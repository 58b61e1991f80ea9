import type { TaskContext, TaskStatus } from 'express-fanout';

/** How long past the deadline a task that ignores its signal settles (inside `graceMs`, so it frees its slot). */
export const LATE_MS = 40;

/** What a task of the fault matrix does, in process or as a method of the worker fixture. */
export interface Behaviour {
  key: string;
  /** Statuses its task may end with when nothing else happens (two where it races the deadline). */
  normal: readonly TaskStatus[];
  /** The value it resolves with, when it does. */
  value?: unknown;
  /** Still pending well after it starts: a client that leaves meanwhile aborts it. */
  slow: boolean;
  /** How it settles {@link LATE_MS} after the deadline, ignoring its signal. */
  late?: TaskStatus;
  run(ctx: TaskContext): unknown;
}

/** A behaviour of a worker-thread task: a method of `__tests__/fixtures/reliability-worker.js` and its args. */
export interface WorkerBehaviour extends Omit<Behaviour, 'run'> {
  /** `remainingMs`: what is left of the budget when the call is made. */
  call(remainingMs: number): [method: string, args: unknown[]];
  /** The status of the response when this task alone fails a required call, if not the usual 502/504. */
  requiredStatus?: number;
}

const hostileThenable = (): unknown => ({
  get then(): never {
    throw new Error('the then getter throws');
  },
});

function revokedProxy(): unknown {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
}

/** A real promise whose own `then` throws: a native `then` would still work, a call to `.then()` does not. */
class HostilePromise<T> extends Promise<T> {
  override then(): never {
    throw new Error('then throws');
  }
}

const after = (ms: number, settle: () => void): void => void setTimeout(settle, ms);

/** Task behaviours in process. `run` ignores the task's signal unless its name says otherwise. */
export const behaviours: readonly Behaviour[] = [
  { key: 'returnsValue', normal: ['fulfilled'], value: 'v', slow: false, run: () => 'v' },
  { key: 'resolves', normal: ['fulfilled'], value: 'v', slow: false, run: async () => 'v' },
  {
    key: 'throwsSync',
    normal: ['rejected'],
    slow: false,
    run: () => {
      throw new Error('thrown synchronously');
    },
  },
  {
    key: 'rejectsError',
    normal: ['rejected'],
    slow: false,
    run: () => Promise.reject(new Error('rejected')),
  },
  { key: 'rejectsString', normal: ['rejected'], slow: false, run: () => Promise.reject('a string') },
  { key: 'rejectsUndefined', normal: ['rejected'], slow: false, run: () => Promise.reject(undefined) },
  {
    key: 'rejectsFrozen',
    normal: ['rejected'],
    slow: false,
    run: () => Promise.reject(Object.freeze({ frozen: true })),
  },
  { key: 'rejectsSymbol', normal: ['rejected'], slow: false, run: () => Promise.reject(Symbol('rejected')) },
  { key: 'hostileThenable', normal: ['rejected'], slow: false, run: hostileThenable },
  { key: 'revokedProxy', normal: ['rejected'], slow: false, run: revokedProxy },
  {
    key: 'promiseSubclassWithThrowingThen',
    normal: ['rejected'],
    slow: false,
    run: () => new HostilePromise<string>((resolve) => resolve('v')),
  },
  {
    key: 'promiseWithThrowingConstructorGetter',
    normal: ['rejected'],
    slow: false,
    run: () =>
      Object.defineProperty(Promise.resolve('v'), 'constructor', {
        get(): never {
          throw new Error('the constructor getter throws');
        },
      }),
  },
  {
    key: 'resolvesToHostileThenable',
    normal: ['rejected'],
    slow: false,
    run: async () => hostileThenable(),
  },
  {
    key: 'thenableCallsBackTwiceThenThrows',
    normal: ['fulfilled'],
    value: 'v',
    slow: false,
    run: () => ({
      then(resolve: (v: unknown) => void, reject: (e: unknown) => void) {
        resolve('v');
        resolve('again');
        reject(new Error('after resolving'));
        throw new Error('thrown after resolving');
      },
    }),
  },
  { key: 'neverSettles', normal: ['timeout'], slow: true, run: () => new Promise(() => undefined) },
  {
    key: 'ignoresSignalSettlesLate',
    normal: ['timeout'],
    late: 'fulfilled',
    slow: true,
    run: (ctx) => new Promise((resolve) => after(ctx.remainingMs() + LATE_MS, () => resolve('late'))),
  },
  {
    key: 'ignoresSignalRejectsLate',
    normal: ['timeout'],
    late: 'rejected',
    slow: true,
    run: (ctx) =>
      new Promise((_, reject) => after(ctx.remainingMs() + LATE_MS, () => reject(new Error('late')))),
  },
  {
    key: 'settlesAtTheDeadline',
    normal: ['fulfilled', 'timeout'],
    value: 'v',
    slow: true,
    run: (ctx) => new Promise((resolve) => after(ctx.remainingMs(), () => resolve('v'))),
  },
];

/** The same behaviours on a worker thread, plus what only a thread can do (exit, return the unclonable). */
export const workerBehaviours: readonly WorkerBehaviour[] = [
  { key: 'resolves', normal: ['fulfilled'], value: 'v', slow: false, call: () => ['resolves', []] },
  { key: 'throwsSync', normal: ['rejected'], slow: false, call: () => ['throwsSync', []] },
  { key: 'rejectsError', normal: ['rejected'], slow: false, call: () => ['rejectsError', []] },
  { key: 'rejectsString', normal: ['rejected'], slow: false, call: () => ['rejectsString', []] },
  { key: 'rejectsUndefined', normal: ['rejected'], slow: false, call: () => ['rejectsUndefined', []] },
  { key: 'rejectsFrozen', normal: ['rejected'], slow: false, call: () => ['rejectsFrozen', []] },
  { key: 'rejectsSymbol', normal: ['rejected'], slow: false, call: () => ['rejectsSymbol', []] },
  { key: 'hostileThenable', normal: ['rejected'], slow: false, call: () => ['hostileThenable', []] },
  { key: 'revokedProxy', normal: ['rejected'], slow: false, call: () => ['revokedProxy', []] },
  { key: 'returnsUnclonable', normal: ['rejected'], slow: false, call: () => ['uncloneable', []] },
  { key: 'exitsTheThread', normal: ['rejected'], slow: false, call: () => ['exits', []] },
  {
    key: 'unknownMethod',
    normal: ['rejected'],
    slow: false,
    requiredStatus: 500,
    call: () => ['noSuchMethod', []],
  },
  { key: 'neverSettles', normal: ['timeout'], slow: true, call: () => ['never', []] },
  {
    key: 'busyPastTheDeadline',
    normal: ['timeout'],
    late: 'fulfilled',
    slow: true,
    call: (remaining) => ['ignoresSignal', [remaining + LATE_MS]],
  },
  {
    key: 'rejectsLate',
    normal: ['timeout'],
    late: 'rejected',
    slow: true,
    call: (remaining) => ['rejectsLate', [remaining + LATE_MS]],
  },
  {
    key: 'settlesAtTheDeadline',
    normal: ['fulfilled', 'timeout'],
    value: 'v',
    slow: true,
    call: (remaining) => ['settlesAt', [remaining]],
  },
];
