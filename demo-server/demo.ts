// The whole demo as one object: data on disk, the slow API thread, the middleware with its worker pool, the
// listening server, and the one `close()` that ends them in order. `server.ts` runs it; the integration test
// creates its own.
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Express } from 'express';
import { drainable, fanout, type FanoutMiddleware } from 'express-fanout';
import { createApp } from './app';
import { createDashboard, type Dashboard } from './dashboard/routes';
import { metricsOf, type Metrics } from './metrics';
import { CATALOG_FILE, ensureCatalog, readCatalog } from './catalog';
import { DB_FILE, ensureDatabase, openDatabase, regionReport } from './db';
import { monitorLoopDelay, type LoopDelay } from './loop-delay';
import { callSlowApi, startSlowApi, type SlowApi } from './slow-api';
import { poolEntry } from './thread';

/** The budget of every request of the demo (a client may ask for less with `x-request-budget-ms`). */
export const BUDGET_MS = 1000;

/** The worker script (worker.ts, or worker.js compiled) and how the pool's threads load it. */
const POOL = poolEntry(join(__dirname, `worker${extname(__filename)}`));

export interface DemoOptions {
  /** Port of the demo server; 0 picks a free one. @default 3000 */
  port?: number;
  /** Address to listen on. @default all interfaces */
  host?: string;
  /** Port of the slow API (on 127.0.0.1); 0 picks a free one. @default 0 */
  apiPort?: number;
  /** Where the database and the catalog file live (created on first start). @default `<package>/demo-server/data` */
  dataDir?: string;
  /** Where 5xx errors are reported. @default console.error */
  log?: (line: string) => void;
  /** Called once the server listens, before the warm-up requests (the demo answers from then on). */
  onListening?: (url: string) => void;
}

export interface Demo {
  readonly app: Express;
  readonly fo: FanoutMiddleware;
  readonly server: http.Server;
  /** `http://localhost:<port>` (or the `host` it listens on) */
  readonly url: string;
  /** The slow API's base URL. */
  readonly apiUrl: string;
  readonly dataDir: string;
  /** What the start found or made on disk, how long one query takes here, and the worker pool's script. */
  readonly setup: {
    databaseCreatedMs: number | null;
    catalogCreated: boolean;
    queryMs: number;
    workerScript: string;
  };
  /** Stops accepting, drains the middleware, ends its worker threads, then ends the slow API. Idempotent. */
  close(): Promise<void>;
}

export async function createDemo(options: DemoOptions = {}): Promise<Demo> {
  const log = options.log ?? ((line: string) => console.error(line));
  const dataDir = resolve(options.dataDir ?? join(packageRoot(), 'demo-server', 'data'));
  const catalogFile = join(dataDir, CATALOG_FILE);
  const catalog = ensureCatalog(catalogFile);
  const dbFile = join(dataDir, DB_FILE);
  const database = ensureDatabase(dbFile);
  const queryMs = timeOneQuery(dbFile);
  // `minWorkers: 2` starts two threads at the first worker call (the warm-up below), not the second one when
  // two calls first overlap; `maxWorkers` keeps its default, one thread per core and at least 2.
  const fo = fanout({
    budgetMs: BUDGET_MS,
    serverTiming: true,
    workers: { script: POOL.script, execArgv: POOL.execArgv, minWorkers: 2 },
  });
  const loopDelay = monitorLoopDelay();
  const metrics = metricsOf(fo);
  const dashboard = createDashboard(fo);
  let api: SlowApi | undefined;
  let listening: Listening | undefined;
  try {
    api = await startSlowApi({ port: options.apiPort ?? 0 });
    // The first fetch pays for starting undici and opening a connection, the first read for cold caches:
    // paid here, once, so that the first request measures the same as the others.
    await Promise.all([callSlowApi(api.url, 0), readCatalog(catalogFile)]);
    const app = createApp({
      fo,
      catalogFile,
      dbFile,
      loopDelay,
      apiUrl: api.url,
      log,
      metrics: metrics.handler,
      dashboard: dashboard.handler,
    });
    listening = await listen(app, options.port ?? 3000, options.host);
    const { server } = listening;
    const { port } = server.address() as AddressInfo;
    const url = `http://${urlHost(options.host)}:${port}`;
    options.onListening?.(url);
    // The same for the worker pool: two requests at once start both threads, which load the script and open
    // the database, before any client's request.
    await Promise.all([warmUp(`${url}/?apiMs=0`), warmUp(`${url}/?apiMs=0`)]);
    const parts = { listening, fo, api, loopDelay, metrics, dashboard };
    let closing: Promise<void> | undefined;
    return {
      app,
      fo,
      server,
      url,
      apiUrl: api.url,
      dataDir,
      setup: {
        databaseCreatedMs: database.created ? Math.round(database.ms) : null,
        catalogCreated: catalog.created,
        queryMs,
        workerScript: basename(POOL.script),
      },
      close: () => (closing ??= shutdown(parts)),
    };
  } catch (error) {
    dashboard.close();
    metrics.close();
    await listening?.stop();
    await fo.close();
    await api?.close();
    loopDelay.close();
    throw error;
  }
}

/** One query on the main thread, on its own connection: warms the page cache, tells what a query costs. */
function timeOneQuery(dbFile: string): number {
  const db = openDatabase(dbFile);
  try {
    const started = performance.now();
    regionReport(db, 'north');
    return Math.round(performance.now() - started);
  } finally {
    db.close();
  }
}

async function warmUp(url: string): Promise<void> {
  const response = await fetch(url);
  const body = await response.text();
  if (!response.ok) throw new Error(`The warm-up request ${url} answered ${response.status}: ${body}`);
}

async function shutdown(parts: {
  listening: Listening;
  fo: FanoutMiddleware;
  api: SlowApi;
  loopDelay: LoopDelay;
  metrics: Metrics;
  dashboard: Dashboard;
}) {
  // The dashboard's event streams never end on their own: ended first, or the server would wait for them.
  parts.dashboard.close();
  // Answers in flight go out; requests meanwhile get 503 + Connection: close; then the listener and idle
  // connections close.
  const stopped = parts.listening.stop();
  // Requests in flight finish: their tasks settle within their budgets, then the middleware stops and its
  // worker threads end.
  await parts.fo.close();
  await stopped;
  // Only now nothing uses the slow API: /sequential calls it outside any task, so the middleware does not
  // wait for it, but the server has closed only once every answer went out.
  await parts.api.close();
  parts.loopDelay.close();
  parts.metrics.close();
}

interface Listening {
  server: http.Server;
  /** Drains the server (express-fanout's `drainable()`): resolves once it closed, by the budget + graceMs. */
  stop(): Promise<void>;
}

function listen(app: Express, port: number, host: string | undefined): Promise<Listening> {
  const server = http.createServer(app);
  // A busy keep-alive connection would otherwise be served on the client's timetable, and an idle one kept
  // until its keep-alive timeout: drainable() sheds the former's next request (503 + Connection: close) and
  // closes the latter, and gives up on stragglers after the budget + graceMs (the default 1000 ms).
  const drain = drainable(server);
  const stop = () => drain.drain({ timeoutMs: BUDGET_MS + 1000 });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve({ server, stop });
    });
  });
}

function urlHost(host: string | undefined): string {
  if (!host || host === '::' || host === '0.0.0.0') return 'localhost';
  return host.includes(':') ? `[${host}]` : host;
}

/** The directory of the package's package.json, whether this runs from the sources or from `build/`. */
function packageRoot(): string {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`No package.json above ${__dirname}`);
  }
}
