import { getEventListeners } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import {
  fanout,
  gather,
  type FanoutMiddleware,
  type FanoutStats,
  type TaskContext,
  type TaskEvent,
  type TaskStatus,
  type Tasks,
} from 'express-fanout';
import { deferred, delay, sleep, waitFor, within } from '../../integration/helpers/async';
import type { ExpressModule } from '../../integration/helpers/express-versions';
import { realProcess } from '../../integration/helpers/harness';
import { trackTimers } from '../../integration/helpers/leaks';
import type { Behaviour, WorkerBehaviour } from './behaviours';

export const WORKER_SCRIPT = join(__dirname, '..', '..', 'fixtures', 'reliability-worker.js');
export const FALLBACK = 'fb';
export const SIBLING = 'sibling';
/** The sibling of the faulty task: resolves after a few ms, honouring its signal. */
const SIBLING_MS = 5;
/** A cell with a client that leaves: the socket closes this long after the faulty task started. */
const DISCONNECT_AFTER_MS = 15;
/** How long the holder of a `shed` cell of a worker form keeps the only thread. */
const HOLD_THREAD_MS = 300;

export type Condition = 'normal' | 'disconnect' | 'shed';

/** A way to call a task: the method of `req.fanout` (or `gather`), with or without a fallback. */
export interface Form {
  key: string;
  mode: 'all' | 'settle';
  fallback: boolean;
  /** A required sibling task in the same call. */
  sibling: boolean;
  /** The sibling waits for the faulty task (`after`) and checks its value in `ctx.results`. */
  after: boolean;
  worker: boolean;
  /** How a 200 carries the value: `{ value }` of one task, `{ value: { name: value } }`, or gather's bare object. */
  answer: 'one' | 'all' | 'gather';
  /** The route handler of one cell. `task` builds the faulty task for this request. */
  handler(name: string, task: (req: Request) => Task): RequestHandler;
}

type Task = Tasks[string];

const withFallback = (run: Task, fallback: boolean): Task =>
  fallback ? { run: typeof run === 'function' ? run : run.run, fallback: FALLBACK } : run;

const sibling = ({ signal }: TaskContext) => delay(SIBLING_MS, 'ok', signal);

/** A sibling that runs after `name`: 'ok' when `ctx.results` has `name` as an own key, 'missing' otherwise. */
const dependent = (name: string): Task => ({
  run: ({ signal, results }: TaskContext) =>
    delay(SIBLING_MS, Object.prototype.hasOwnProperty.call(results, name) ? 'ok' : 'missing', signal),
  after: [name],
});

const answer =
  (res: Response, next: NextFunction) =>
  (promise: Promise<unknown>): void =>
    void promise.then((value) => res.json({ value }), next);

/** Task options a form adds to the faulty task (retries, hedging, an asynchronous fallback). */
type Extra = Record<string, unknown>;

function inProcess(
  key: string,
  mode: 'all' | 'settle',
  fallback: boolean,
  via: 'all' | 'run' | 'gather' | 'after',
  extra?: Extra,
): Form {
  const decorate = (t: Task): Task =>
    extra === undefined ? t : { ...(typeof t === 'function' ? { run: t } : t), ...extra };
  return {
    key,
    mode,
    fallback,
    sibling: via !== 'run',
    after: via === 'after',
    worker: false,
    answer: via === 'run' ? 'one' : via === 'after' ? 'all' : via,
    handler(name, task) {
      if (via === 'gather') {
        return (req, res, next) =>
          gather(() => ({ [name]: withFallback(task(req), fallback), [SIBLING]: sibling }))(req, res, next);
      }
      return (req, res, next) => {
        const t = decorate(withFallback(task(req), fallback));
        if (via === 'run') return answer(res, next)(req.fanout.run(t, name));
        const tasks = { [name]: t, [SIBLING]: via === 'after' ? dependent(name) : sibling };
        answer(res, next)(mode === 'all' ? req.fanout.all(tasks) : req.fanout.settle(tasks));
      };
    },
  };
}

export const forms: readonly Form[] = [
  inProcess('all', 'all', false, 'all'),
  inProcess('all with fallback', 'all', true, 'all'),
  inProcess('settle', 'settle', false, 'all'),
  inProcess('settle with fallback', 'settle', true, 'all'),
  inProcess('run', 'all', false, 'run'),
  inProcess('run with fallback', 'all', true, 'run'),
  inProcess('gather', 'all', false, 'gather'),
  inProcess('gather with fallback', 'all', true, 'gather'),
  inProcess('all, a sibling after it', 'all', false, 'after'),
  inProcess('all with fallback, a sibling after it', 'all', true, 'after'),
  inProcess('settle, a sibling after it', 'settle', false, 'after'),
  inProcess('all with retries', 'all', false, 'all', { retries: { max: 2, backoffMs: 1 } }),
  inProcess('all hedged', 'all', false, 'all', { hedgeMs: 5 }),
  inProcess('all with an asynchronous fallback', 'all', true, 'all', {
    fallback: () => new Promise((resolve) => setTimeout(resolve, 1, FALLBACK)),
  }),
];

/** `req.fanout.worker(method)`, and `ctx.worker(method)` inside `all()` with a fallback. */
export const workerForms: readonly Form[] = [
  {
    key: 'worker',
    mode: 'all',
    fallback: false,
    sibling: false,
    after: false,
    worker: true,
    answer: 'one',
    handler: (name, task) => (req, res, next) => {
      const run = task(req) as (ctx: TaskContext) => unknown;
      // The task's body is a call to `ctx.worker()`; `req.fanout.worker()` makes that call itself.
      answer(res, next)(run(workerContextOf(req, name)) as Promise<unknown>);
    },
  },
  {
    key: 'ctx.worker with fallback',
    mode: 'all',
    fallback: true,
    sibling: false,
    after: false,
    worker: true,
    answer: 'all',
    handler: (name, task) => (req, res, next) =>
      answer(res, next)(req.fanout.all({ [name]: withFallback(task(req), true) })),
  },
];

/**
 * What `req.fanout.worker()` is given in the `worker` form: a stand-in context whose `worker()` is
 * `req.fanout.worker()` and whose `remainingMs()` is the request's.
 */
function workerContextOf(req: Request, name: string): TaskContext {
  return {
    remainingMs: () => req.fanout.remainingMs(),
    worker: (method: string, args?: unknown[]) => req.fanout.worker(method, args),
    get signal(): AbortSignal {
      throw new Error(`the worker form of ${name} has no task signal`);
    },
  } as unknown as TaskContext;
}

export interface Cell {
  /** The cell's name in its group: the behaviour's key and, but for `normal`, the condition. */
  name: string;
  /** The faulty task's name: the cell's, or the worker method for `req.fanout.worker()`. */
  task: string;
  form: Form;
  condition: Condition;
  behaviour: Behaviour | WorkerBehaviour;
}

export interface Observed {
  events: TaskEvent[];
  status?: number;
  body?: unknown;
  headers: http.IncomingHttpHeaders;
  clientError?: string;
  ms: number;
  /** Statuses passed to `res.writeHead`, in order: one per response sent. */
  writeHeads: number[];
  /** When each `writeHead` came, in ms since the request reached the app. */
  serverMs: number[];
  /** What was left of the budget when the cell's handler started. */
  startRemaining: number;
  /** Errors that reached Express's error handling. */
  errors: unknown[];
  /** Listeners left on the request's and the tasks' signals once everything settled. */
  listeners: number[];
  stats?: FanoutStats;
  /** Unhandled rejections and uncaught exceptions of the group that name this cell's task. */
  unhandled: unknown[];
}

export interface GroupResult {
  cells: Map<string, Observed>;
  /** Every unhandled rejection and uncaught exception seen while the group ran. */
  unhandled: unknown[];
  warnings: string[];
  /** Timers created through the global setTimeout during the group and still pending afterwards. */
  pendingTimers: number;
  /** `process.getActiveResourcesInfo()` before the group and after it closed. */
  resourcesBefore: string[];
  resourcesAfter: string[];
}

export interface GroupSetup {
  budgetMs: number;
  graceMs: number;
}

const isTaskContext = (value: unknown): value is TaskContext =>
  typeof value === 'object' && value !== null && 'remainingMs' in value;

/** The faulty task of a cell: records its signal, closes the socket for `disconnect`, then behaves. */
function faultyTask(cell: Cell, req: Request, signals: AbortSignal[]): Task {
  return (ctx: TaskContext) => {
    if (cell.form.key !== 'worker') signals.push(ctx.signal);
    if (cell.condition === 'disconnect') setTimeout(() => req.socket.destroy(), DISCONNECT_AFTER_MS);
    if ('run' in cell.behaviour) return cell.behaviour.run(ctx);
    const [method, args] = cell.behaviour.call(isTaskContext(ctx) ? ctx.remainingMs() : 0);
    return ctx.worker(method, args);
  };
}

interface Live {
  cell: Cell;
  fo: FanoutMiddleware;
  handler: RequestHandler;
  observed: Observed;
  signals: AbortSignal[];
  gate: ReturnType<typeof deferred<void>>;
}

const describeReason = (reason: unknown): string => {
  try {
    const e = reason as { message?: unknown; tasks?: unknown; cause?: unknown };
    return `${String(e?.message ?? reason)} ${JSON.stringify(e?.tasks ?? [])}`;
  } catch {
    return Object.prototype.toString.call(reason);
  }
};

/**
 * Runs every cell of one group (one Express major, one form) at once on one server, each cell with a
 * middleware instance of its own (so its `stats()` and `onTask` are its own), waits until everything has
 * settled, closes it all and reports what each cell saw and what the process kept.
 */
export async function runGroup(
  express: ExpressModule,
  cells: readonly Cell[],
  setup: GroupSetup,
): Promise<GroupResult> {
  const resourcesBefore = realProcess.getActiveResourcesInfo();
  const unhandled: unknown[] = [];
  const warnings: string[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
  // Jest fails whichever test runs when a rejection goes unhandled; the group attributes each to its cell.
  const others = realProcess.listeners('unhandledRejection');
  realProcess.removeAllListeners('unhandledRejection');
  realProcess.on('unhandledRejection', onUnhandled);
  realProcess.on('uncaughtExceptionMonitor', onUnhandled);
  realProcess.on('warning', onWarning);
  const timers = trackTimers();
  const live = new Map<string, Live>();
  const server = http.createServer();
  try {
    for (const cell of cells) {
      const observed: Observed = {
        events: [],
        headers: {},
        ms: 0,
        writeHeads: [],
        serverMs: [],
        startRemaining: 0,
        errors: [],
        listeners: [],
        unhandled: [],
      };
      const shed = cell.condition === 'shed';
      const fo = fanout({
        budgetMs: setup.budgetMs,
        maxBudgetMs: 20000,
        graceMs: setup.graceMs,
        serverTiming: true,
        ...(shed ? { concurrency: 2, maxQueue: 0 } : {}),
        workers: cell.form.worker
          ? { script: WORKER_SCRIPT, maxWorkers: 1, ...(shed ? { maxQueueSize: 0 } : {}) }
          : false,
        onTask: (event) => observed.events.push(event),
      });
      const signals: AbortSignal[] = [];
      const handler = cell.form.handler(cell.task, (req) => faultyTask(cell, req, signals));
      live.set(cell.name, { cell, fo, handler, observed, signals, gate: deferred<void>() });
    }
    const app = express();
    const byRequest = new WeakMap<Request, Live>();
    const liveOf = (req: Request): Live => byRequest.get(req)!;
    const mount = (path: string, handler: RequestHandler) =>
      app.get(
        path,
        (req, res, next) => {
          const l = live.get(String(req.params.cell))!;
          byRequest.set(req, l);
          l.fo(req, res, next);
        },
        handler,
      );
    mount('/cell/:cell', (req, res, next) => {
      const { observed, handler, signals } = liveOf(req);
      const writeHead = res.writeHead;
      const arrival = performance.now();
      res.writeHead = function (this: Response, ...args: unknown[]) {
        observed.writeHeads.push(args[0] as number);
        observed.serverMs.push(performance.now() - arrival);
        return (writeHead as (...a: unknown[]) => Response).apply(this, args);
      } as typeof res.writeHead;
      signals.push(req.fanout.signal);
      observed.startRemaining = req.fanout.remainingMs();
      handler(req, res, next);
    });
    // Takes both slots of a `shed` cell's middleware (and its only thread, for a worker form) until released.
    mount('/hold/:cell', (req, res, next) => {
      const { gate, cell } = liveOf(req);
      const second = cell.form.worker
        ? (ctx: TaskContext) => ctx.worker('settlesAt', [HOLD_THREAD_MS])
        : () => gate.promise;
      answer(res, next)(req.fanout.settle({ holder: () => gate.promise, holder2: second }));
    });
    mount('/warm/:cell', (req, res, next) => answer(res, next)(req.fanout.worker('resolves')));
    app.use((error: unknown, req: Request, _res: Response, next: NextFunction) => {
      if (req.path.startsWith('/cell/')) liveOf(req)?.observed.errors.push(error);
      next(error);
    });
    server.on('request', app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const url = (path: string, name: string) => `${base}/${path}/${encodeURIComponent(name)}`;

    // A thread per worker cell, started before the cells run so that the budget is not spent starting it.
    await Promise.all(
      [...live.values()]
        .filter((l) => l.cell.form.worker && l.cell.condition !== 'shed')
        .map((l) => request(url('warm', l.cell.name), { 'x-request-budget-ms': '20000' })),
    );
    for (const l of live.values()) l.observed.events.length = 0;

    await Promise.all(
      [...live.values()].map(async (l) => {
        let holder: Promise<unknown> | undefined;
        if (l.cell.condition === 'shed') {
          holder = request(url('hold', l.cell.name), { 'x-request-budget-ms': '20000' });
          await waitFor(() => {
            const s = l.fo.stats();
            return s.running + s.workers.busy >= 2;
          }, 'the holder to take every slot');
        }
        const answered = await request(url('cell', l.cell.name));
        Object.assign(l.observed, answered);
        l.gate.resolve();
        await holder;
      }),
    );

    for (const l of live.values()) {
      await waitFor(() => {
        const s = l.fo.stats();
        return s.running === 0 && s.queued === 0 && s.workers.busy === 0 && s.workers.pending === 0;
      }, `every slot of ${l.cell.name} to free`).catch(() => undefined);
    }
    await waitFor(() => timers.pending() === 0, 'the timers of the tasks', 3000).catch(() => undefined);
    await sleep(10);
    for (const l of live.values()) {
      l.observed.stats = l.fo.stats();
      l.observed.listeners = l.signals.map((s) => getAbortListeners(s));
    }
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    for (const l of live.values()) await within(l.fo.close(), 5000, `close() of ${l.cell.name}`);
    timers.restore();
  }
  const pendingTimers = timers.pending();
  const baseline = count(resourcesBefore);
  await waitFor(
    () => sameOrFewer(count(realProcess.getActiveResourcesInfo()), baseline),
    'the resources of the process to return to the baseline',
    3000,
  ).catch(() => undefined);
  realProcess.off('unhandledRejection', onUnhandled);
  for (const listener of others) realProcess.on('unhandledRejection', listener);
  realProcess.off('uncaughtExceptionMonitor', onUnhandled);
  realProcess.off('warning', onWarning);
  const result = new Map<string, Observed>();
  for (const [name, l] of live) {
    l.observed.unhandled = unhandled.filter((reason) => describeReason(reason).includes(l.cell.task));
    result.set(name, l.observed);
  }
  return {
    cells: result,
    unhandled,
    warnings,
    pendingTimers,
    resourcesBefore,
    resourcesAfter: realProcess.getActiveResourcesInfo(),
  };
}

const getAbortListeners = (signal: AbortSignal): number => getEventListeners(signal, 'abort').length;

export const count = (resources: readonly string[]): Record<string, number> => {
  const out: Record<string, number> = Object.create(null) as Record<string, number>;
  for (const r of resources) out[r] = (out[r] ?? 0) + 1;
  return out;
};

/** Every kind of resource is at most as numerous as in `baseline`. */
export const sameOrFewer = (now: Record<string, number>, baseline: Record<string, number>): boolean =>
  Object.keys(now).every((kind) => now[kind]! <= (baseline[kind] ?? 0));

/** One GET on a connection of its own; resolves (never rejects) with what the client saw. */
function request(
  url: string,
  headers: Record<string, string> = {},
): Promise<Pick<Observed, 'status' | 'body' | 'headers' | 'clientError' | 'ms'>> {
  const start = performance.now();
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text) as unknown;
        } catch {
          // an HTML error page
        }
        resolve({ status: res.statusCode, body, headers: res.headers, ms: performance.now() - start });
      });
      res.on('error', (error) =>
        resolve({ clientError: error.message, headers: res.headers, ms: performance.now() - start }),
      );
    });
    req.on('error', (error) =>
      resolve({ clientError: error.message, headers: {}, ms: performance.now() - start }),
    );
  });
}

export type { TaskStatus };
