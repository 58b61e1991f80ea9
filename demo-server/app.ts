// The demo's routes: the same three real IO steps (a file, a database query, an HTTP call) awaited one after
// another and fanned out, then the story's timers, then a tight budget with a fallback.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
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
import { isRegion, regionReport, REGIONS, type DemoDatabase, type Region, type RegionReport } from './db';
import { callSlowApi, MAX_DELAY_MS } from './slow-api';

export interface AppDeps {
  /** The middleware, mounted for every route (its `stats()` feed `/stats`). */
  fo: FanoutMiddleware;
  catalogFile: string;
  db: DemoDatabase;
  /** Base URL of the slow API. */
  apiUrl: string;
  /** Where 5xx errors are reported. */
  log: (line: string) => void;
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
  ['/stats', 'the middleware counters, fo.stats()'],
];

export function createApp({ fo, catalogFile, db, apiUrl, log }: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(stopwatch);
  app.use(fo);

  // The database step of a fan-out. The query is synchronous and holds the event loop until it returns, so it
  // first lets the sibling tasks, started in the same tick, put their IO on the wire: two turns of the event
  // loop, as a request on a new connection is written only when the connection's 'connect' event comes.
  // (The worker-pool step replaces this with `ctx.worker(...)`, off the event loop.)
  const dbTask =
    (region: Region) =>
    async ({ signal }: TaskContext): Promise<RegionReport> => {
      await setImmediate(undefined, { signal });
      await setImmediate(undefined, { signal });
      return regionReport(db, region);
    };

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
      const dbValue = await step('db', () => regionReport(db, region));
      const api = await step('api', () => callSlowApi(apiUrl, apiMs));
      res.json({ route: '/sequential', elapsedMs: elapsedMs(req), steps, file, db: dbValue, api });
    }),
  );

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
          // Does not fit: aborted at the deadline (its fetch is cancelled), and the fallback answers instead.
          slowApi: {
            run: ({ signal, headers }) => callSlowApi(apiUrl, slowMs, { signal, headers: headers() }),
            fallback: (error: unknown) => ({ fallback: true, reason: messageOf(error) }),
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

  app.get('/stats', (_req, res) => {
    res.json(fo.stats());
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
