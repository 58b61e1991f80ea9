// The hot path without HTTP: the fan-out middleware and one `req.fanout.all()` of N instant tasks, against a bare
// `Promise.all` of the same N tasks, in one process, taking turns. It measures the package's own cost per request
// (CPU and bytes allocated), which the HTTP scenarios see only through Express's ~70 µs and the network's noise.
//
// Used by the bench (bench/scenarios/hot-path.ts, through bench/micro/run.ts on the built dist/) and by the
// regression guard (__tests__/unit/hot-path-budget.test.ts, on lib/ through ts-jest).
import { channel } from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { GCProfiler, getHeapStatistics } from 'node:v8';

/** The part of the package the microbenchmark drives: `fanout()` and what it returns. */
export interface FanoutFactory {
  (options?: Record<string, unknown>): {
    (req: never, res: never, next: () => void): void;
    close(): Promise<void>;
  };
}

export interface HotPathOptions {
  fanout: FanoutFactory;
  /** Tasks a request. */
  tasks: number;
  /** `fanout()`'s options; default: `{ budgetMs: 1000, serverTiming: false }`. */
  options?: Record<string, unknown>;
  /** Alternating rounds of each side; the ratios are the medians of the per-round ratios. */
  rounds: number;
  /** Requests a round. */
  batch: number;
  /** Requests before the first round, per side (JIT warm-up). */
  warmup?: number;
  /**
   * Requests in flight (connections, each one request at a time). Over HTTP, a request of instant tasks runs to
   * its end in the microtasks of its socket's callback, before the next request is read: one at a time, whatever
   * the connections, and so is the default here. More make the tasks queue behind the concurrency limit.
   * @default 1
   */
  connections?: number;
  /** How the tasks are given: as functions (default), or as spec objects `{ run }` defined once. */
  specs?: boolean;
  /**
   * Through Express (`app.handle`) on real `IncomingMessage` and `ServerResponse` objects, no sockets: both sides
   * pay Express's prototype switch, which gives every request and response a hidden class of its own, so what the
   * package adds to them costs what it costs in a server (the fake objects hide it).
   */
  express?: boolean;
}

export interface Side {
  /** Requests a second, median over the rounds. */
  opsPerS: number;
  /** The main thread's CPU µs a request, median over the rounds. */
  usPerOp: number;
  /** Bytes allocated on the JS heap a request, median over the rounds. */
  bytesPerOp: number;
}

export interface HotPathResult {
  tasks: number;
  base: Side;
  fanout: Side;
  /** Median over the rounds of fan-out ops/s over Promise.all ops/s in the same round. */
  opsRatio: number;
  /** Median over the rounds of the extra µs a request (fan-out minus Promise.all, same round). */
  extraUsPerOp: number;
  extraUsPerTask: number;
  /** Median over the rounds of fan-out bytes over Promise.all bytes a request. */
  bytesRatio: number;
  extraBytesPerOp: number;
  /** The per-round ops ratios, to judge the noise. */
  roundRatios: number[];
}

const median = (values: readonly number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** A keep-alive connection, which the middleware watches for the client leaving. */
class FakeSocket extends EventEmitter {
  destroyed = false;
}

/** What the middleware reads and listens to on `res` (and `on-headers` patches, for Server-Timing). */
class FakeResponse extends EventEmitter {
  writableEnded = false;
  destroyed = false;
  headersSent = false;
  statusCode = 200;
  private readonly headers: Record<string, unknown> = {};
  getHeader(name: string): unknown {
    return this.headers[name.toLowerCase()];
  }
  setHeader(name: string, value: unknown): this {
    this.headers[name.toLowerCase()] = value;
    return this;
  }
  writeHead(statusCode: number): this {
    this.statusCode = statusCode;
    this.headersSent = true;
    return this;
  }
  /** The response goes out: headers (the Server-Timing hook runs), then the end and 'close', as Node does. */
  finish(): void {
    this.writeHead(this.statusCode);
    this.writableEnded = true;
    this.emit('close');
  }
}

/** A request as Express hands it over: inheriting from `http.IncomingMessage.prototype`, with headers and socket. */
function fakeRequest(socket: FakeSocket): IncomingMessage {
  const req = Object.create(IncomingMessage.prototype) as IncomingMessage;
  req.headers = {};
  (req as unknown as { socket: FakeSocket }).socket = socket;
  req.method = 'GET';
  req.url = '/';
  return req;
}

const task = async (value: number): Promise<number> => value;

interface Workload {
  names: string[];
  fns: (() => Promise<number>)[];
  tasks: Record<string, unknown>;
}

function workload(n: number, specs: boolean): Workload {
  const names = Array.from({ length: n }, (_, i) => `t${i}`);
  const fns = names.map((_, i) => () => task(i));
  const tasks = Object.fromEntries(names.map((name, i) => [name, specs ? { run: fns[i] } : fns[i]]));
  return { names, fns, tasks };
}

type One = (socket: FakeSocket) => Promise<unknown>;

/** A minimal Express app and a request through it: `app.handle(req, res, done)`; `done` ends the response. */
interface Handler {
  handle(req: IncomingMessage, res: ServerResponse, done: (error?: unknown) => void): void;
}
interface ExpressLike {
  (): Handler & {
    use(fn: unknown): ExpressLike extends () => infer A ? A : never;
    get(path: string, fn: unknown): unknown;
  };
}

/** Both sides through Express: real request and response objects, no sockets (see `express`). */
function viaExpress(w: Workload, middleware: ReturnType<FanoutFactory>): { base: One; fanout: One } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const express = require('express') as ExpressLike;
  const { names, fns } = w;
  const baseApp = express();
  baseApp.get('/', async (_req: unknown, res: { locals: Record<string, unknown> }, next: () => void) => {
    const promises = new Array<Promise<number>>(fns.length);
    for (let i = 0; i < fns.length; i++) promises[i] = fns[i]!();
    const values = await Promise.all(promises);
    const out: Record<string, number> = {};
    for (let i = 0; i < names.length; i++) out[names[i]!] = values[i]!;
    res.locals.out = out;
    next();
  });
  const fanoutApp = express();
  fanoutApp.use(middleware);
  fanoutApp.get(
    '/',
    async (
      req: { fanout: { all(t: unknown): Promise<unknown> } },
      res: { locals: Record<string, unknown> },
      next: () => void,
    ) => {
      res.locals.out = await req.fanout.all(w.tasks);
      next();
    },
  );
  // A connection as Node's server accepts it (`socket.server` set): the middleware then hears the response's end
  // from the server's diagnostics channel, as it does in production, and adds no listener to the response.
  const socket = Object.assign(new Socket(), { server: {} });
  const finished = channel('http.server.response.finish');
  const through =
    (app: Handler, side: 'base' | 'fanout'): One =>
    () =>
      new Promise((resolve, reject) => {
        const req = new IncomingMessage(socket);
        req.method = 'GET';
        req.url = '/';
        req.headers = {};
        const res = new ServerResponse(req);
        app.handle(req, res, (error?: unknown) => {
          if (error !== undefined) return reject(error);
          // The response is over: as after `res.end()`, the server's 'finish' (which publishes the response's end
          // when someone listens: the package's server, not the bare one's) and the response's 'close'.
          (res as { finished: boolean }).finished = true;
          if (side === 'fanout' && finished.hasSubscribers) {
            finished.publish({ request: req, response: res, socket, server: socket.server });
          }
          res.emit('close');
          resolve(undefined);
        });
      });
  return { base: through(baseApp, 'base'), fanout: through(fanoutApp, 'fanout') };
}

/** The baseline: the same tasks under a bare `Promise.all`, and an object of their results. */
function baseline(w: Workload): One {
  const { names, fns } = w;
  return async (socket) => {
    fakeRequest(socket);
    const res = new FakeResponse();
    const promises = new Array<Promise<number>>(fns.length);
    for (let i = 0; i < fns.length; i++) promises[i] = fns[i]!();
    const values = await Promise.all(promises);
    const out: Record<string, number> = {};
    for (let i = 0; i < names.length; i++) out[names[i]!] = values[i]!;
    res.finish();
    return out;
  };
}

/** The package: the middleware sets `req.fanout`, the handler awaits `all()`, the response goes out. */
function packaged(w: Workload, middleware: ReturnType<FanoutFactory>): One {
  const next = (error?: unknown): void => {
    if (error !== undefined) throw error;
  };
  return async (socket) => {
    const req = fakeRequest(socket);
    const res = new FakeResponse();
    middleware(req as never, res as never, next);
    const out = await (req as unknown as { fanout: { all(t: unknown): Promise<unknown> } }).fanout.all(
      w.tasks,
    );
    res.finish();
    return out;
  };
}

/** Requests a connection makes between two turns of the event loop. */
const TURN = 16;

const SCHEDSTAT = `/proc/self/task/${process.pid}/schedstat`;
let schedstat = true;

/**
 * The main thread's CPU time, µs: on Linux from its schedstat (ns, its own thread only: neither V8's helper
 * threads nor the time a busy neighbour holds the core count, and the machine is shared), else the process's.
 */
function mainThreadCpuUs(): number {
  if (schedstat) {
    try {
      return Number(readFileSync(SCHEDSTAT, 'latin1').split(' ', 1)[0]) / 1000;
    } catch {
      schedstat = false;
    }
  }
  const { user, system } = process.cpuUsage();
  return user + system;
}

interface Measured {
  us: number;
  bytes: number;
}

/**
 * Runs `count` requests, one at a time on each of the connections (as a closed-loop load generator does), back
 * to the event loop every {@link TURN} requests (as sockets' callbacks are: the door of `eventLoop` would see one
 * endless macrotask otherwise); the main thread's CPU time they took and the bytes they allocated on the JS heap.
 */
async function batch(one: One, sockets: FakeSocket[], count: number): Promise<Measured> {
  // Let the loop turn between batches, outside the measurement, and every 100 requests of a connection within
  // one (both sides alike): a batch resolves only microtasks, and a run of them with no turn for over a second
  // (a loaded machine) reads as a loop that far behind, which the door sheds (a server turns its loop between
  // requests).
  await new Promise((resolve) => setTimeout(resolve, 1));
  // Allocation = growth of the used heap + what every collection in between reclaimed (V8's GC profiler).
  const profiler = new GCProfiler();
  profiler.start();
  const heapBefore = getHeapStatistics().used_heap_size;
  const start = mainThreadCpuUs();
  let left = count;
  const connection = async (socket: FakeSocket): Promise<void> => {
    for (let n = 1; left > 0; n++) {
      left--;
      await one(socket);
      if (n % TURN === 0) await new Promise(setImmediate);
    }
  };
  await Promise.all(sockets.map(connection));
  const us = mainThreadCpuUs() - start;
  const heapAfter = getHeapStatistics().used_heap_size;
  const data = profiler.stop() as unknown as {
    statistics: {
      beforeGC: { heapStatistics: { usedHeapSize: number } };
      afterGC: { heapStatistics: { usedHeapSize: number } };
    }[];
  };
  let reclaimed = 0;
  for (const gc of data.statistics) {
    reclaimed += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize;
  }
  return { us: us / count, bytes: (heapAfter - heapBefore + reclaimed) / count };
}

/** Measures one N: alternating rounds of Promise.all and the package, the order swapping each round. */
export async function measureHotPath(o: HotPathOptions): Promise<HotPathResult> {
  const w = workload(o.tasks, o.specs ?? false);
  const middleware = o.fanout({ budgetMs: 1000, serverTiming: false, ...o.options });
  const sockets = Array.from({ length: o.connections ?? 1 }, () => new FakeSocket());
  const sides = o.express
    ? viaExpress(w, middleware)
    : { base: baseline(w), fanout: packaged(w, middleware) };
  const runs = { base: [] as Measured[], fanout: [] as Measured[] };
  try {
    const warmup = o.warmup ?? o.batch;
    await batch(sides.base, sockets, warmup);
    await batch(sides.fanout, sockets, warmup);
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 === 0 ? (['base', 'fanout'] as const) : (['fanout', 'base'] as const);
      for (const side of order) {
        runs[side].push(await batch(sides[side], sockets, o.batch));
      }
    }
  } finally {
    await middleware.close();
  }
  const side = (list: Measured[]): Side => {
    const us = median(list.map((m) => m.us));
    return { opsPerS: 1e6 / us, usPerOp: us, bytesPerOp: median(list.map((m) => m.bytes)) };
  };
  const roundRatios = runs.base.map((b, i) => b.us / runs.fanout[i]!.us);
  const extraUs = median(runs.base.map((b, i) => runs.fanout[i]!.us - b.us));
  return {
    tasks: o.tasks,
    base: side(runs.base),
    fanout: side(runs.fanout),
    opsRatio: median(roundRatios),
    extraUsPerOp: extraUs,
    extraUsPerTask: extraUs / o.tasks,
    bytesRatio: median(runs.base.map((b, i) => runs.fanout[i]!.bytes / b.bytes)),
    extraBytesPerOp: median(runs.base.map((b, i) => runs.fanout[i]!.bytes - b.bytes)),
    roundRatios,
  };
}
