// The demo's routes: the same three real steps (a file, a database query on the worker pool, an HTTP call)
// awaited one after another and fanned out, then the story's timers, a tight budget with a fallback, and a
// CPU-bound step on the worker pool and on the event loop.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import express, {
  type ErrorRequestHandler,
  type Express,
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
} from 'express';
import {
  FanoutError,
  gather,
  type FanoutMiddleware,
  type TaskContext,
  type TaskTiming,
} from 'express-fanout';
import { readCatalog } from './catalog';
import { LastGood } from './last-good';
import { CPU_N, fib, MAX_CPU_N } from './cpu';
import { isRegion, REGIONS, type Region } from './db';
import type { LoopDelay } from './loop-delay';
import { callSlowApi, MAX_DELAY_MS } from './slow-api';
import './worker-methods'; // the worker methods' types: worker('regionReport', …), worker('fib', …)

export interface AppDeps {
  /** The middleware, mounted for every route (its `stats()` feed `/stats`). */
  fo: FanoutMiddleware;
  catalogFile: string;
  /** The SQLite file, queried read-only by the worker script's `regionReport` on the pool's threads. */
  dbFile: string;
  /** The event-loop delay monitor shown by `/stats`. */
  loopDelay: LoopDelay;
  /** Base URL of the slow API. */
  apiUrl: string;
  /** Where 5xx errors are reported. */
  log: (line: string) => void;
  /** `GET /metrics` (metrics.ts), when the demo serves it. */
  metrics?: RequestHandler;
  /** `/dashboard` and its `/events` stream (dashboard/routes.ts), when the demo serves them. */
  dashboard?: RequestHandler;
}

/** The slow API's latency in `/` and `/sequential` unless `?apiMs=` says otherwise. */
export const API_MS = 100;
/** The budget of `/budget`'s fan-out call, in ms. */
export const TIGHT_BUDGET_MS = 150;
/** Latencies of `/budget`'s two API calls: one fits in the budget, one does not. */
export const FAST_API_MS = 50;
export const SLOW_API_MS = 400;

/** What the demo serves, for the start-up banner. */
export const ROUTES: ReadonlyArray<readonly [path: string, what: string]> = [
  ['/', 'file + db + api through req.fanout.all: about the slowest of the three'],
  ['/sequential', 'the same three awaited one after another: their sum'],
  [
    '/budget',
    `a ${TIGHT_BUDGET_MS} ms budget: a fallback for the call that misses it; see Server-Timing (curl -i)`,
  ],
  ['/seed', "the story's 0.1 / 0.2 / 0.3 s timers through gather(): 0.3 s"],
  ['/seed/sequential', 'the same timers one after another: 0.6 s'],
  [
    '/cpu',
    `fib(${CPU_N}) on the worker pool, ~100-200 ms of CPU: the event loop stays free; ?n= <= ${MAX_CPU_N}`,
  ],
  ['/cpu/inline', 'the same fib on the event loop: every other request waits for it'],
  ['/ping', 'a light answer: its latency shows how free the event loop is'],
  [
    '/dashboard',
    'open it in a browser: a waterfall of each answer from its Server-Timing, live stats(), a burst of 500',
  ],
  ['/metrics', 'Prometheus metrics (express-fanout/prometheus): task and queue time histograms, gauges'],
  [
    '/stats',
    'fo.stats() (the adaptive concurrency `limit` and worker threads included) and the event-loop delay since the last /stats',
  ],
];

export function createApp({
  fo,
  catalogFile,
  dbFile,
  loopDelay,
  apiUrl,
  log,
  metrics,
  dashboard,
}: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  // Outside the middleware: a scrape, the page and its event stream use no budget and never count as tasks.
  if (metrics) app.get('/metrics', metrics);
  if (dashboard) app.use(dashboard);
  app.use(stopwatch);
  app.use(fo);

  // The database step: the query is synchronous (better-sqlite3), so it runs on the worker pool, where it
  // holds a thread, not the event loop. worker-methods.ts types the arguments and the RegionReport result.
  const dbTask =
    (region: Region) =>
    ({ worker }: TaskContext) =>
      worker('regionReport', [dbFile, region]);

  app.get(
    '/',
    route(async (req, res) => {
      const { region, apiMs } = ioParams(req);
      const values = await req.fanout.all({
        file: ({ signal }) => readCatalog(catalogFile, signal),
        db: dbTask(region),
        api: ({ signal, headers }) => callSlowApi(apiUrl, apiMs, { signal, headers: headers() }),
      });
      res.json({ route: '/', elapsedMs: elapsedMs(req), steps: stepsOf(req.fanout.timings()), ...values });
    }),
  );

  app.get(
    '/sequential',
    route(async (req, res) => {
      const { region, apiMs } = ioParams(req);
      const steps: Record<string, number> = {};
      const step = async <T>(name: string, run: () => T | Promise<T>): Promise<T> => {
        const started = performance.now();
        try {
          return await run();
        } finally {
          steps[name] = round(performance.now() - started);
        }
      };
      const file = await step('file', () => readCatalog(catalogFile));
      // The same query on the same pool as `/`, awaited in its turn: the two routes differ only in running
      // the steps together or one after another, not in where the query runs (inline, it would skip the
      // thread hop, and the comparison would mix two effects).
      const dbValue = await step('db', () => req.fanout.worker('regionReport', [dbFile, region]));
      const api = await step('api', () => callSlowApi(apiUrl, apiMs));
      res.json({ route: '/sequential', elapsedMs: elapsedMs(req), steps, file, db: dbValue, api });
    }),
  );

  const lastGood = new LastGood<Awaited<ReturnType<typeof callSlowApi>>>();
  app.get(
    '/budget',
    route(async (req, res) => {
      const { region } = ioParams(req);
      const slowMs = intParam(req, 'slowMs', SLOW_API_MS, MAX_DELAY_MS);
      const values = await req.fanout.all(
        {
          file: ({ signal }) => readCatalog(catalogFile, signal),
          db: dbTask(region),
          // Fits in the budget; the service echoes the budget header it received from `ctx.headers()`.
          api: ({ signal, headers }) => callSlowApi(apiUrl, FAST_API_MS, { signal, headers: headers() }),
          // Does not fit: aborted at the deadline (its fetch is cancelled), and the fallback answers instead
          // with the last good answer from an asynchronous cache (awaited within `fallbackMs` of the deadline).
          slowApi: {
            run: async ({ signal, headers }) => {
              const answer = await callSlowApi(apiUrl, slowMs, { signal, headers: headers() });
              await lastGood.set('slowApi', answer);
              return answer;
            },
            fallback: async (error: unknown) => {
              const last = await lastGood.get('slowApi');
              return {
                fallback: true,
                reason: messageOf(error),
                stale: last ? { ...last.value, at: last.at } : null,
              };
            },
          },
        },
        { budgetMs: TIGHT_BUDGET_MS },
      );
      res.json({
        route: '/budget',
        budgetMs: TIGHT_BUDGET_MS,
        elapsedMs: elapsedMs(req),
        steps: stepsOf(req.fanout.timings()),
        ...values,
      });
    }),
  );

  // The story, exactly: three waits of 0.1, 0.2 and 0.3 s. Fanned out they take 0.3 s, in sequence 0.6 s.
  const pause =
    (ms: number) =>
    ({ signal }: TaskContext): Promise<string> =>
      sleep(ms, `waited ${ms / 1000} s`, { signal });
  app.get(
    '/seed',
    gather(
      { file: pause(100), db: pause(200), api: pause(300) },
      { map: (values, req) => ({ route: '/seed', elapsedMs: elapsedMs(req), ...values }) },
    ),
  );
  app.get(
    '/seed/sequential',
    route(async (req, res) => {
      const file = await sleep(100, 'waited 0.1 s');
      const db = await sleep(200, 'waited 0.2 s');
      const api = await sleep(300, 'waited 0.3 s');
      res.json({ route: '/seed/sequential', elapsedMs: elapsedMs(req), file, db, api });
    }),
  );

  // The CPU-bound step, on the worker pool: under the request's budget (a thread still busy at the deadline
  // is terminated, the answer is a 504), while the event loop serves other requests.
  app.get(
    '/cpu',
    route(async (req, res) => {
      const n = intParam(req, 'n', CPU_N, MAX_CPU_N);
      const value = await req.fanout.worker('fib', [n]);
      res.json({
        route: '/cpu',
        n,
        fib: value,
        elapsedMs: elapsedMs(req),
        steps: stepsOf(req.fanout.timings()),
      });
    }),
  );
  // The same computation on the event loop: nothing else runs meanwhile, and no budget can cut it short.
  app.get('/cpu/inline', (req, res) => {
    const n = intParam(req, 'n', CPU_N, MAX_CPU_N);
    const started = performance.now();
    const value = fib(n);
    const fibMs = round(performance.now() - started);
    res.json({ route: '/cpu/inline', n, fib: value, elapsedMs: elapsedMs(req), steps: { fib: fibMs } });
  });

  app.get('/ping', (_req, res) => {
    res.json({ pong: true });
  });

  // The counters, plus how late the event loop ran since the previous /stats (each read starts a new window).
  app.get('/stats', (_req, res) => {
    res.json({ ...fo.stats(), eventLoopDelayMs: loopDelay.read() });
  });

  app.use(jsonErrors(log));
  return app;
}

/**
 * Runs an async handler on Express 4 and 5 alike: Express 4 ignores a returned promise, so its rejection is
 * passed to `next` here.
 */
function route(handler: (req: Request, res: Response) => Promise<void>): RequestHandler {
  return (req, res, next) => {
    handler(req, res).catch(next);
  };
}

const startedAt = new WeakMap<Request, number>();

function stopwatch(req: Request, _res: Response, next: NextFunction): void {
  startedAt.set(req, performance.now());
  next();
}

/** Milliseconds since the request reached the app. */
function elapsedMs(req: Request): number {
  return round(performance.now() - (startedAt.get(req) ?? performance.now()));
}

const round = (ms: number): number => Math.round(ms * 10) / 10;

const stepsOf = (timings: TaskTiming[]): Record<string, number> =>
  Object.fromEntries(timings.map((t) => [t.name, round(t.ms)]));

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** A client error: answered with its message (`expose`, as `http-errors` does). */
class BadRequestError extends Error {
  readonly status = 400;
  readonly expose = true;
}

/** `?region=` (one of REGIONS, default north) and `?apiMs=` (the slow API's latency, default API_MS). */
function ioParams(req: Request): { region: Region; apiMs: number } {
  const region = req.query.region ?? 'north';
  if (!isRegion(region)) {
    throw new BadRequestError(
      `Expected \`region\` to be one of ${REGIONS.join(', ')}, got \`${String(region)}\``,
    );
  }
  return { region, apiMs: intParam(req, 'apiMs', API_MS, MAX_DELAY_MS) };
}

function intParam(req: Request, name: string, fallback: number, max: number): number {
  const raw = req.query[name];
  if (raw === undefined) return fallback;
  const value = typeof raw === 'string' && /^\d{1,6}$/.test(raw) ? Number(raw) : NaN;
  if (!(value <= max)) {
    throw new BadRequestError(
      `Expected \`${name}\` to be an integer from 0 to ${max}, got \`${String(raw)}\``,
    );
  }
  return value;
}

/**
 * Errors as JSON, with the status, `expose` and `headers` the package's errors carry (as `http-errors` do):
 * a 504 says which task missed which budget; a 5xx never shows an internal message.
 */
function jsonErrors(log: (line: string) => void): ErrorRequestHandler {
  return (error: unknown, req, res, next) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    const e = (typeof error === 'object' && error !== null ? error : {}) as {
      status?: unknown;
      statusCode?: unknown;
      expose?: unknown;
      headers?: unknown;
      message?: unknown;
    };
    const candidate = Number(e.status ?? e.statusCode);
    const status = Number.isInteger(candidate) && candidate >= 400 && candidate <= 599 ? candidate : 500;
    const expose = typeof e.expose === 'boolean' ? e.expose : status < 500;
    if (typeof e.headers === 'object' && e.headers !== null) res.set(e.headers as Record<string, string>);
    // A FanoutError's message names the tasks and the budget, never a task's own error: safe to show.
    const message =
      (expose || error instanceof FanoutError) && typeof e.message === 'string'
        ? e.message
        : (http.STATUS_CODES[status] ?? 'Error');
    if (status >= 500) log(`${req.method} ${req.originalUrl} -> ${status}: ${messageOf(error)}`);
    res.status(status).json({ error: message, status, elapsedMs: elapsedMs(req) });
  };
}
