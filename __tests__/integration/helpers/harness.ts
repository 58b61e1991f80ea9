import http from 'node:http';
import type { AddressInfo } from 'node:net';
import vm from 'node:vm';
import type { Express, NextFunction, Request, RequestHandler, Response } from 'express';
import supertest from 'supertest';
import { fanout, type FanoutMiddleware, type FanoutOptions } from 'express-fanout';
import { sleep, within } from './async';
import type { ExpressModule } from './express-versions';

/**
 * The real `process` object. Jest gives each test file its own `process` whose listeners never see
 * process-level events; code evaluated in the outer context reaches the real one.
 */
export const realProcess = new vm.Script('process').runInThisContext() as NodeJS.Process;

export interface Served {
  app: Express;
  fo: FanoutMiddleware;
  server: http.Server;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** supertest bound to the listening server (one server for every request of the test). */
  http: ReturnType<typeof supertest>;
  /** Every error that reached Express's error handling, in order. */
  errors: unknown[];
}

export interface ServeSetup {
  /** `app.set('env', env)`; `'production'` hides stacks and 5xx messages in Express's default error handler. */
  env?: string;
  /** Middleware mounted before `fanout()`. */
  before?: (app: Express) => void;
  /** Mount something else than the middleware itself (e.g. `fanout` without the call). */
  mount?: (app: Express, fo: FanoutMiddleware) => void;
}

/** Runs `fn` as an Express handler on Express 4 and 5 alike: a rejection goes to `next()`. */
export function route(fn: (req: Request, res: Response) => Promise<unknown>): RequestHandler {
  return (req, res, next) => {
    fn(req, res).catch(next);
  };
}

/** What the tests need to know about an error, as JSON. */
export interface ErrorReport {
  name: string;
  isTypeError: boolean;
  message: string;
  status?: number;
  statusCode?: number;
  expose?: boolean;
  tasks?: string[];
  headers?: Record<string, string>;
  kind?: string;
  budgetMs?: number;
  cause?: { name?: string; message?: string; value?: unknown };
}

export function describeError(error: unknown): ErrorReport {
  if (!(error instanceof Error)) return { name: typeof error, isTypeError: false, message: String(error) };
  const e = error as Error & Partial<Omit<ErrorReport, 'cause'>>;
  const cause = (error as { cause?: unknown }).cause;
  return {
    name: e.name,
    isTypeError: error instanceof TypeError,
    message: e.message,
    status: e.status,
    statusCode: e.statusCode,
    expose: e.expose,
    tasks: e.tasks === undefined ? undefined : [...e.tasks],
    headers: e.headers,
    kind: e.kind,
    budgetMs: e.budgetMs,
    cause:
      cause instanceof Error
        ? { name: cause.name, message: cause.message }
        : cause === undefined
          ? undefined
          : { value: cause },
  };
}

/** A handler that answers 200 with `{ ok: true, value }` or `{ ok: false, error }` so tests see the details. */
export function report(fn: (req: Request, res: Response) => Promise<unknown>): RequestHandler {
  return (req, res) => {
    fn(req, res).then(
      (value) => {
        if (!res.headersSent) res.json({ ok: true, value: value ?? null });
      },
      (error: unknown) => {
        if (!res.headersSent) res.json({ ok: false, error: describeError(error) });
      },
    );
  };
}

/** Times a promise (a supertest request, usually). */
export async function timed<T>(promise: PromiseLike<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await promise;
  return { value, ms: performance.now() - start };
}

async function listen(app: Express): Promise<http.Server> {
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

async function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

const isHeadersSent = (error: unknown): boolean =>
  (error as { code?: unknown } | null)?.code === 'ERR_HTTP_HEADERS_SENT' ||
  /headers already sent|after they are sent/i.test(String((error as { message?: unknown } | null)?.message));

/**
 * Sets up one suite: a `serve()` that builds and starts an Express app with `fanout(options)`, and an
 * `afterEach` that closes every middleware and server, then checks that the test raised no unhandled
 * rejection, no uncaught exception, no "headers already sent" and no listener-leak warning.
 */
export function useHarness(express: ExpressModule) {
  const closers: Array<() => Promise<void>> = [];
  const unhandled: unknown[] = [];
  const uncaught: unknown[] = [];
  const warnings: Error[] = [];
  const expressErrors: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  const onUncaught = (error: unknown) => uncaught.push(error);
  const onWarning = (warning: Error) => warnings.push(warning);

  beforeAll(() => {
    realProcess.on('unhandledRejection', onUnhandled);
    realProcess.on('uncaughtExceptionMonitor', onUncaught);
    realProcess.on('warning', onWarning);
  });
  afterAll(() => {
    realProcess.off('unhandledRejection', onUnhandled);
    realProcess.off('uncaughtExceptionMonitor', onUncaught);
    realProcess.off('warning', onWarning);
  });
  afterEach(async () => {
    const pending = closers.splice(0);
    for (const close of pending.reverse()) await close();
    await sleep(10);
    const leaks = warnings.filter((w) => w.name === 'MaxListenersExceededWarning');
    const headersSent = [...expressErrors, ...unhandled, ...uncaught].filter(isHeadersSent);
    const found = { unhandled: [...unhandled], uncaught: [...uncaught], headersSent, leaks };
    unhandled.length = 0;
    uncaught.length = 0;
    warnings.length = 0;
    expressErrors.length = 0;
    expect(found).toEqual({ unhandled: [], uncaught: [], headersSent: [], leaks: [] });
  });

  async function serve(
    options: FanoutOptions | undefined,
    routes: (app: Express, fo: FanoutMiddleware) => void,
    setup: ServeSetup = {},
  ): Promise<Served> {
    const fo = fanout(options);
    const app = express();
    if (setup.env !== undefined) app.set('env', setup.env);
    setup.before?.(app);
    if (setup.mount) setup.mount(app, fo);
    else app.use(fo);
    routes(app, fo);
    const errors: unknown[] = [];
    app.use((error: unknown, _req: Request, _res: Response, next: NextFunction) => {
      errors.push(error);
      expressErrors.push(error);
      next(error);
    });
    const server = await listen(app);
    closers.push(async () => {
      await closeServer(server);
      await within(fo.close(), 5000, 'fanout().close()');
    });
    const { port } = server.address() as AddressInfo;
    return { app, fo, server, url: `http://127.0.0.1:${port}`, http: supertest(server), errors };
  }

  /** Registers extra cleanup (closed before the servers of the test). */
  function onCleanup(close: () => Promise<void> | void): void {
    closers.push(async () => close());
  }

  return { serve, onCleanup };
}

/** A request the test can abort (a client that goes away), through a raw `http` client. */
export function openRequest(
  url: string,
  path: string,
  headers: Record<string, string> = {},
): { abort(): void; response: Promise<http.IncomingMessage | undefined> } {
  const req = http.get(`${url}${path}`, { headers, agent: false });
  req.on('error', () => undefined);
  const response = new Promise<http.IncomingMessage | undefined>((resolve) => {
    req.on('response', (res) => {
      res.resume();
      resolve(res);
    });
    req.on('close', () => resolve(undefined));
  });
  return { abort: () => req.destroy(), response };
}

export interface TimingEntry {
  name: string;
  dur?: number;
  desc?: string;
  raw: string;
}

/** Parses a `Server-Timing` header (`db;dur=201.3, api;dur=150.2;desc="fallback", total;dur=301`). */
export function parseServerTiming(header: string | string[] | undefined): TimingEntry[] {
  if (header === undefined) return [];
  const text = Array.isArray(header) ? header.join(',') : header;
  // Commas and semicolons inside a quoted `desc` ("fallback; queued 3.1 ms") separate nothing.
  const outsideQuotes = (sep: string) => new RegExp(`${sep}(?=(?:[^"]*"[^"]*")*[^"]*$)`);
  return text
    .split(outsideQuotes(','))
    .map((s) => s.trim())
    .filter(Boolean)
    .map((raw) => {
      const [name = '', ...params] = raw.split(outsideQuotes(';')).map((s) => s.trim());
      const entry: TimingEntry = { name, raw };
      for (const p of params) {
        const eq = p.indexOf('=');
        const key = p.slice(0, eq);
        const value = p.slice(eq + 1);
        if (key === 'dur') entry.dur = Number(value);
        if (key === 'desc') entry.desc = value.replace(/^"(.*)"$/, '$1');
      }
      return entry;
    });
}
