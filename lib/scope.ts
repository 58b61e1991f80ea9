import { performance } from 'node:perf_hooks';
import createDebug from 'debug';
import { channel, type Channel } from 'node:diagnostics_channel';
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import onHeaders from 'on-headers';
import { requestBudget } from './budget-header';
import { Call, round, type CallHost, type Mode } from './call';
import { clear, epochOf, remaining, timerAt, type Due } from './deadline';
import { BudgetExceededError, ClientClosedError, FanoutError, list, quietly } from './errors';
import { describe, integer, rejectUnknown } from './validate';
import type { Door } from './door';
import type { Runtime } from './runtime';
import { Lane } from './scheduler';
import { MAX_BYTES, serverTimingOf } from './observe/server-timing';
import { parseTasks, workerOnly } from './task-def';
import { originArgument } from './transit';
import type { TaskRun } from './task';
import type {
  CallOptions,
  CheckedTasks,
  Fanout,
  Results,
  SettledResults,
  Task,
  TaskStatus,
  TaskTiming,
  Tasks,
  Transferable,
  WorkerArgs,
  WorkerMethodName,
  WorkerResult,
} from './types';

type End = 'deadline' | 'disconnect' | 'finished';

const debug = createDebug('express-fanout');

/**
 * `req.fanout`: one request's helper. Creating it costs one small object, and nothing on the response when
 * Node's HTTP server parsed the request (see {@link Scope.watch}); the budget, lane, deadline timer and
 * `Server-Timing` hook are set up on first use, so a handler that never fans out pays nothing more, while its
 * budget still counts from when the middleware saw the request.
 */
export class Scope implements Fanout, CallHost, Due {
  private active = false;
  budgetMs = 0;
  /** The request deadline in `performance.now()` ms. */
  deadlineAt = 0;
  lane!: Lane;
  /** Every task of the request, for `timings()` and `Server-Timing`. */
  readonly tasks: TaskRun[] = [];
  /** The calls still running (an array: a request has one or two at a time, where a Set cost more). */
  private calls: Call[] | null = null;
  /** Its deadline's own timer, when the middleware's queue of deadlines refused it (see {@link armDeadline}). */
  private timer: NodeJS.Timeout | null = null;
  /** Its links in the middleware's queue of deadlines (deadline.ts), while it is in. */
  nextDue: Due | null = null;
  prevDue: Due | null = null;
  queuedDue = false;
  private controller: AbortController | null = null;
  private ended: End | null = null;
  /** The route's own budget, set by `budget(ms)`: it replaces the middleware's `budgetMs`. */
  private routeBudgetMs: number | undefined;
  /** The door that counts this request in flight, until its response ends. */
  private door: Door | null = null;
  /** The request's socket, read once by {@link watch} (each read of `req` costs: see `responseEnded`). */
  private socket: Socket | null = null;

  constructor(
    readonly runtime: Runtime,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    /** When the middleware saw the request, `performance.now()` ms. */
    readonly arrival: number,
    /** The scope of an outer `fanout()` instance that saw the request first, whose deadline bounds this one. */
    private readonly outer: Scope | undefined,
    /** The request's budget header, as the middleware read it (`undefined` when absent or not read). */
    private readonly asked: string | string[] | undefined,
  ) {}

  all<T extends Tasks, G = T>(tasks: CheckedTasks<T, G>, options?: CallOptions): Promise<Results<T>> {
    return this.call(tasks, 'all', options) as Promise<Results<T>>;
  }

  settle<T extends Tasks, G = T>(
    tasks: CheckedTasks<T, G>,
    options?: CallOptions,
  ): Promise<SettledResults<T>> {
    return this.call(tasks, 'settle', options) as Promise<SettledResults<T>>;
  }

  run<V>(task: Task<V>, name?: string): Promise<V> {
    if (name !== undefined && typeof name !== 'string') {
      return Promise.reject(
        new TypeError(`Expected the name of \`run()\` to be a string, got ${typeof name}`),
      );
    }
    const label = name ?? ((typeof task === 'function' && task.name) || 'task');
    return this.call({ [label]: task }, 'all', undefined).then(
      (values) => (values as Record<string, V>)[label]!,
    );
  }

  worker<M extends WorkerMethodName>(
    method: M,
    args?: WorkerArgs<M>,
    options?: { timeoutMs?: number; transfer?: readonly Transferable[] },
  ): Promise<WorkerResult<M>> {
    const transfer = options?.transfer;
    // Takes a worker thread's slot only: no IO slot is held while the call waits for a thread or runs.
    const run = workerOnly((ctx: import('./types').TaskContext) =>
      ctx.worker(method, args, transfer ? { transfer } : undefined),
    );
    return this.run(options?.timeoutMs === undefined ? run : { run, timeoutMs: options.timeoutMs }, method);
  }

  get signal(): AbortSignal {
    this.activate();
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.ended) this.controller.abort(this.endError());
    }
    return this.controller.signal;
  }

  /** Epoch ms in the caller's clock: `Date.now()` plus what is left, read now (NTP steps and fake clocks agree). */
  get deadline(): number {
    this.activate();
    return epochOf(this.deadlineAt);
  }

  remainingMs(): number {
    this.activate();
    return remaining(this.deadlineAt);
  }

  timings(): TaskTiming[] {
    const now = performance.now();
    return this.tasks.map((task) => ({
      name: task.name,
      start: round(task.submittedAt - this.arrival),
      ms: round(
        (task.state === 'settled' && !task.fallbackPending ? task.settledAt + task.fallbackMs : now) -
          task.submittedAt,
      ),
      status: task.state === 'settled' ? task.status! : task.state,
    }));
  }

  headers(url?: string | URL): Record<string, string> {
    const origin = originArgument(url);
    this.activate();
    return this.outboundHeaders(this.deadlineAt, origin);
  }

  /**
   * The budget header for outbound calls: the time left minus the propagation margin, so that the callee's
   * deadline (counted from when it sees the request, a transit later) falls before ours with room for its
   * answer's way back: the fixed part, plus the transit learned for the callee's `origin` when it is known.
   * Never 0, which the receiver would ignore.
   */
  outboundHeaders(deadline: number, origin?: string): Record<string, string> {
    const { budgetHeader: header, propagationMargin: margin } = this.runtime.options;
    if (!header) return {};
    const now = performance.now();
    const left = deadline - now;
    const learned = origin === undefined ? 0 : this.runtime.transits.marginMs(origin, now);
    return { [header]: String(Math.max(1, Math.floor(left - margin.ms - left * margin.ratio - learned))) };
  }

  /** Whether this is `req`'s scope. */
  serves(req: IncomingMessage): boolean {
    return this.req === req;
  }

  /** The client left before the response: whatever a call still gives, nobody will read it. */
  get disconnected(): boolean {
    return this.ended === 'disconnect';
  }

  /** The request is over: deadline passed, client gone or response sent. */
  get over(): boolean {
    return this.ended !== null;
  }

  /** How a task submitted now must end at once because the request is over, if it is. */
  ending(name: string): { status: TaskStatus; error: FanoutError } | undefined {
    if (!this.ended) return undefined;
    return { status: this.ended === 'deadline' ? 'timeout' : 'aborted', error: this.endError([name]) };
  }

  untrack(call: Call): void {
    const calls = this.calls;
    if (calls === null) return;
    // The usual case first: the last call made is the one ending.
    if (calls[calls.length - 1] === call) {
      calls.pop();
      return;
    }
    const at = calls.indexOf(call);
    if (at >= 0) calls.splice(at, 1);
  }

  private call(tasks: unknown, mode: Mode, options: CallOptions | undefined): Promise<unknown> {
    let call: Call;
    try {
      const defs = parseTasks(tasks);
      const budgetMs = options === undefined ? undefined : callBudget(options);
      this.activate();
      if (budgetMs !== undefined && debug.enabled && budgetMs > this.deadlineAt - performance.now()) {
        debug(
          "%s(tasks, { budgetMs: %d }) capped at the request's %d ms left: a call's budget only tightens; use budget(ms) on the route to lengthen it",
          mode,
          budgetMs,
          Math.round(this.deadlineAt - performance.now()),
        );
      }
      call = new Call(this, defs, mode, budgetMs);
    } catch (error) {
      return Promise.reject(error);
    }
    for (const task of call.tasks) this.tasks.push(task);
    this.calls!.push(call);
    call.begin();
    return call.promise;
  }

  /**
   * From the middleware, once: the response's end is watched from now on, for the scope and the process's door
   * (which, if given, counts the request in flight until then), and the request is listed on its socket (where
   * `req.fanout` is found again if its slot is gone). A request that Node's HTTP server parsed needs no listener
   * of its own: the server publishes every response's end on the `http.server.response.finish` diagnostics
   * channel, which one subscriber for the process hears (the factory subscribes it: {@link hearResponseEnds}),
   * and the socket's one 'close' listener hears a client that leaves first. A request from elsewhere (a test's
   * objects, an adapter such as serverless-http that calls Express without a server) gets a 'close' listener on
   * its response; `on`, not `once`: a response closes once, and once's wrapper cost two more allocations a
   * request. A pipelined request waits behind the one being answered, and its `res` sees no 'close' when the
   * client goes: the socket's does.
   *
   * A response already over (an async middleware before this one let it end, or the client go) has had its
   * end: the request is over at once, and not counted.
   */
  watch(door: Door | null): void {
    const res = this.res;
    const socket = (this.socket = this.req.socket as Socket | null);
    if (responseEnded(res)) return this.end('finished');
    if (res.destroyed || socket?.destroyed) return this.end('disconnect');
    if (door !== null) {
      door.entered(this.arrival);
      this.door = door;
    }
    // Until the channel has ended a request in this process, a listener too (closed() runs once either way).
    if (responseFinish[PROVEN] !== true || socket === null || !servedByNode(socket, res)) {
      res.on('close', () => this.closed());
    }
    if (socket) watchSocket(socket, this);
  }

  private activate(): void {
    if (this.active) return;
    this.active = true;
    const { options } = this.runtime;
    this.lane = new Lane(this.arrival, this.runtime.nextLaneId++);
    this.calls = [];
    this.armDeadline();
    // A request already over (its response ended or its client left before the first use) keeps no timer.
    if (this.ended !== null) this.disarm();
    const timing = options.serverTiming;
    if (timing && !this.res.headersSent) {
      onHeaders(this.res, () => {
        // With two instances on the request, the outer one's hook runs last and writes the one `total`.
        const withTotal = !this.outerTimes();
        const existing = this.res.getHeader('Server-Timing');
        if (existing === undefined) {
          const own = serverTimingOf(this, timing.include, MAX_BYTES, withTotal);
          if (own !== '') this.res.setHeader('Server-Timing', own);
          return;
        }
        // The app's own entries come first, and the whole header still stays within the cap.
        const before = String(existing);
        const room = MAX_BYTES - Buffer.byteLength(before) - 2;
        if (room >= 128) {
          const own = serverTimingOf(this, timing.include, room, withTotal);
          if (own !== '') this.res.setHeader('Server-Timing', `${before}, ${own}`);
        }
      });
    }
  }

  /**
   * The budget and the deadline timer: the route's `budget(ms)` or the middleware's `budgetMs`, replaced or
   * shortened by the client's header, never past an outer instance's deadline.
   */
  private armDeadline(): void {
    const budget = requestBudget(this.asked, this.runtime.options, this.routeBudgetMs);
    this.budgetMs = budget;
    this.deadlineAt = this.arrival + budget;
    if (this.outer) {
      this.outer.activate();
      if (this.outer.deadlineAt < this.deadlineAt) {
        debug(
          'a %d ms budget capped at the %d ms of the fanout() mounted before it: an inner instance only tightens; use budget(ms) on the route to lengthen it',
          this.budgetMs,
          this.outer.budgetMs,
        );
        this.deadlineAt = this.outer.deadlineAt;
        this.budgetMs = this.outer.budgetMs;
      }
    }
    const left = this.deadlineAt - performance.now();
    // The middleware's one timer for its requests' deadlines, or one of its own for a deadline out of turn.
    if (left > 0) {
      if (!this.runtime.deadlines.add(this)) this.timer = timerAt(this.deadlineAt, onDeadline, this);
    } else this.end('deadline');
  }

  /**
   * `budget(ms)`: this request's budget becomes `ms` (counted from the request's arrival, as `budgetMs` is), for
   * this instance and the ones mounted before it. Too late once a task has started (its deadline is fixed) or
   * the request is over: then nothing changes and it returns why, as `budget()`'s error says it.
   */
  setBudget(ms: number): string | undefined {
    const late = this.tooLate();
    if (late !== undefined) return late;
    this.outer?.setBudget(ms);
    this.routeBudgetMs = ms;
    if (this.active) {
      this.disarm();
      this.armDeadline();
    }
    return undefined;
  }

  private tooLate(): string | undefined {
    if (this.tasks.length > 0) return `${list(this.tasks.map((t) => t.name))} already started`;
    if (this.ended === 'deadline') return 'its budget has already run out';
    if (this.ended) return 'its response is already over';
    return this.outer?.tooLate();
  }

  /** Whether an outer instance on this request writes `Server-Timing` (and so its `total`). */
  private outerTimes(): boolean {
    for (let outer = this.outer; outer; outer = outer.outer) {
      if (outer.runtime.options.serverTiming) return true;
    }
    return false;
  }

  /** Its deadline came, in the middleware's queue of deadlines (which has taken it out). */
  expire(): void {
    this.end('deadline');
  }

  /** Its deadline is no longer timed: its own timer cleared, or out of the queue. */
  private disarm(): void {
    if (this.timer !== null) this.timer = clear(this.timer);
    else if (this.queuedDue) this.runtime.deadlines.remove(this);
  }

  /** The response closed, or its socket did: finished if it was written in full, the client gone otherwise. */
  closed(): void {
    const socket = this.socket;
    if (socket) unwatchSocket(socket, this);
    const door = this.door;
    if (door !== null) {
      this.door = null;
      door.left(performance.now(), this.arrival);
    }
    this.end(responseEnded(this.res) ? 'finished' : 'disconnect');
  }

  /** The deadline passed, the client left or the response went out: end whatever is still pending. */
  end(reason: End): void {
    this.disarm();
    if (this.ended === 'disconnect' || this.ended === 'finished') return;
    if (this.ended === 'deadline' && reason === 'finished') {
      this.ended = reason;
      return;
    }
    this.ended = reason;
    this.controller?.abort(this.endError());
    if (!this.calls || this.calls.length === 0) return;
    const status: TaskStatus = reason === 'deadline' ? 'timeout' : 'aborted';
    // Slots freed by one call's tasks must not start another call's task that is about to be expired too.
    this.runtime.scheduler.held(() => this.expireCalls(status));
  }

  private expireCalls(status: TaskStatus): void {
    for (const call of [...this.calls!]) {
      // Made from a timer or a socket event, these errors' stacks would show only Node's frames: skip them.
      call.expire(
        status,
        (name) => quietly(() => this.endError([name])),
        (names) => quietly(() => this.endError(names)),
      );
    }
  }

  private endError(tasks: string[] = []): FanoutError {
    switch (this.ended) {
      case 'deadline':
        return new BudgetExceededError(tasks, this.budgetMs);
      case 'disconnect':
        return new ClientClosedError(tasks);
      default:
        return new FanoutError(
          `${tasks.length ? `Task \`${tasks.join('`, `')}\`` : 'The request'} aborted: the response was already sent`,
          500,
          tasks,
        );
    }
  }
}

const CALL_OPTIONS = ['budgetMs'];

/** The `budgetMs` of `all(tasks, options)`, validated; unknown options are an error, as in `fanout()`. */
function callBudget(options: unknown): number | undefined {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`Expected the call options to be an object, got ${describe(options)}`);
  }
  rejectUnknown(options, CALL_OPTIONS);
  const { budgetMs } = options as CallOptions;
  return budgetMs === undefined ? undefined : integer('budgetMs', budgetMs, 1);
}

/**
 * `res.writableEnded`, read where it is kept: `finished`, an own field of every `http.ServerResponse` (the
 * getter only returns it). Express gives each response a hidden class of its own, so each property read on it
 * is a lookup the engine's caches do not hold, and a getter's is a walk up three prototypes; a response of
 * another kind (a test's) keeps `writableEnded`.
 */
function responseEnded(res: ServerResponse): boolean {
  const finished = (res as { finished?: unknown }).finished;
  return typeof finished === 'boolean' ? finished : res.writableEnded;
}

/**
 * The request came through Node's HTTP or HTTPS server, which publishes its response's end on the
 * `http.server.response.finish` channel: its socket is a server's (`socket.server`, set by `net.Server` for each
 * connection it accepts) and its response is an `http.ServerResponse`. The socket's hidden class is shared by
 * every connection, so reading it costs what reading the response does not.
 */
function servedByNode(socket: Socket, res: ServerResponse): boolean {
  return (socket as { server?: unknown }).server != null && res instanceof ServerResponse;
}

/** The channel Node's HTTP server publishes each response's end on (held here: a channel object may be collected). */
const responseFinish = channel('http.server.response.finish') as Channel & {
  /** A copy of the package subscribed: one subscriber serves every copy in the process (the records are shared). */
  [HEARD]?: true;
  /**
   * The channel has ended a request: its messages carry what {@link onResponseFinish} reads. Node documents its
   * built-in channels as experimental; until one message proves them, requests keep a listener too.
   */
  [PROVEN]?: true;
};

/** Subscribes {@link onResponseFinish}, once for the process (by the middleware factory). */
export function hearResponseEnds(): void {
  if (responseFinish[HEARD] === true) return;
  responseFinish[HEARD] = true;
  responseFinish.subscribe(onResponseFinish);
}

/**
 * A response of Node's HTTP server ended: the scopes of its request end (an outer and an inner `fanout()`
 * instance may both have one), found among its socket's open requests. Every response of the process passes
 * here; one that no `fanout()` saw costs a property read on its socket.
 */
function onResponseFinish(message: unknown): void {
  // Defensive: a subscriber's exception would become the process's uncaught exception.
  if (typeof message !== 'object' || message === null) return;
  const { request, socket } = message as { request?: IncomingMessage; socket?: Socket | null };
  if (typeof socket !== 'object' || socket === null || request === undefined) return;
  const open = (socket as Watched)[OPEN];
  if (open === undefined) return;
  const ending: Scope[] = [];
  if (serving(open.one, request)) ending.push(open.one);
  if (open.more !== null) for (const scope of open.more) if (serving(scope, request)) ending.push(scope);
  if (ending.length > 0) responseFinish[PROVEN] = true;
  for (const scope of ending) scope.closed();
}

/** `scope` is `req`'s (and one of this package's: two copies in one process share the socket's records). */
function serving(scope: Scope | null, req: IncomingMessage): scope is Scope {
  return typeof scope?.serves === 'function' && typeof scope.closed === 'function' && scope.serves(req);
}

function onDeadline(scope: Scope): void {
  scope.end('deadline');
}

/** The open requests of a socket: the one being answered, and those pipelined behind it. */
interface OpenRequests {
  one: Scope | null;
  more: Set<Scope> | null;
}

/**
 * Kept on the socket itself under a symbol, with one 'close' listener per socket however many requests it
 * carries: a property read a request, where a WeakMap lookup and a Set per socket cost more. `Symbol.for`: two
 * copies of the package in one process (or one test runner's module registries) see the same requests, as
 * `req.fanout`'s accessor, installed once for the process, must.
 */
const OPEN = Symbol.for('express-fanout.open-requests');
const HEARD = Symbol.for('express-fanout.hears-response-ends');
const PROVEN = Symbol.for('express-fanout.response-ends-proven');
type Watched = Socket & { [OPEN]?: OpenRequests };

function watchSocket(socket: Socket, scope: Scope): void {
  let open = (socket as Watched)[OPEN];
  if (open === undefined) {
    const requests: OpenRequests = (open = { one: null, more: null });
    (socket as Watched)[OPEN] = requests;
    socket.once('close', () => {
      const scopes = requests.more === null ? [] : [...requests.more];
      if (requests.one !== null) scopes.unshift(requests.one);
      requests.one = null;
      requests.more = null;
      for (const s of scopes) s.closed();
    });
  }
  if (open.one === null) open.one = scope;
  else (open.more ??= new Set()).add(scope);
}

/**
 * The scope of `req` among its socket's open requests, if it is watched there (the door admitted it, or it was
 * used): how `req.fanout` finds it again when its slot is gone (`res.locals` replaced by a later middleware).
 */
export function watchedScope(req: IncomingMessage): Scope | undefined {
  const open = (req.socket as Watched | null | undefined)?.[OPEN];
  if (open === undefined) return undefined;
  // The last one watched: with two instances on the request, the inner one's, which `req.fanout` was.
  let found: Scope | undefined;
  if (serving(open.one, req)) found = open.one;
  if (open.more !== null) for (const scope of open.more) if (serving(scope, req)) found = scope;
  return found;
}

function unwatchSocket(socket: Socket, scope: Scope): void {
  const open = (socket as Watched)[OPEN];
  if (open === undefined) return;
  if (open.one === scope) open.one = null;
  else open.more?.delete(scope);
}
