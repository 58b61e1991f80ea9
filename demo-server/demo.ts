// The whole demo as one object: data on disk, the slow API thread, the middleware and the listening server,
// and the one `close()` that ends them in order. `server.ts` runs it; the integration test creates its own.
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Express } from 'express';
import { fanout, type FanoutMiddleware } from 'express-fanout';
import { createApp } from './app';
import { CATALOG_FILE, ensureCatalog, readCatalog } from './catalog';
import { DB_FILE, ensureDatabase, openDatabase, regionReport, type DemoDatabase } from './db';
import { callSlowApi, startSlowApi, type SlowApi } from './slow-api';

/** The budget of every request of the demo (a client may ask for less with `x-request-budget-ms`). */
export const BUDGET_MS = 1000;

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
  /** What the start found or made on disk, and how long one query takes here. */
  readonly setup: { databaseCreatedMs: number | null; catalogCreated: boolean; queryMs: number };
  /** Stops accepting, drains the middleware, then ends the slow API and closes the database. Idempotent. */
  close(): Promise<void>;
}

export async function createDemo(options: DemoOptions = {}): Promise<Demo> {
  const log = options.log ?? ((line: string) => console.error(line));
  const dataDir = resolve(options.dataDir ?? join(packageRoot(), 'demo-server', 'data'));
  const catalogFile = join(dataDir, CATALOG_FILE);
  const catalog = ensureCatalog(catalogFile);
  const database = ensureDatabase(join(dataDir, DB_FILE));
  const db = openDatabase(join(dataDir, DB_FILE));
  const fo = fanout({ budgetMs: BUDGET_MS, serverTiming: true });
  let api: SlowApi | undefined;
  try {
    const started = performance.now();
    regionReport(db, 'north'); // warms the page cache, and says what one query costs on this machine
    const queryMs = Math.round(performance.now() - started);
    api = await startSlowApi({ port: options.apiPort ?? 0 });
    // The first fetch pays for starting undici and opening a connection, the first read for cold caches:
    // paid here, once, so that the first request measures the same as the others.
    await Promise.all([callSlowApi(api.url, 0), readCatalog(catalogFile)]);
    const app = createApp({ fo, catalogFile, db, apiUrl: api.url, log });
    const listening = await listen(app, options.port ?? 3000, options.host);
    const { server } = listening;
    const { port } = server.address() as AddressInfo;
    const slowApi = api;
    let closing: Promise<void> | undefined;
    return {
      app,
      fo,
      server,
      url: `http://${urlHost(options.host)}:${port}`,
      apiUrl: api.url,
      dataDir,
      setup: {
        databaseCreatedMs: database.created ? Math.round(database.ms) : null,
        catalogCreated: catalog.created,
        queryMs,
      },
      close: () => (closing ??= shutdown(listening, fo, slowApi, db)),
    };
  } catch (error) {
    await fo.close();
    await api?.close();
    db.close();
    throw error;
  }
}

async function shutdown(listening: Listening, fo: FanoutMiddleware, api: SlowApi, db: DemoDatabase) {
  // No new connections; idle keep-alive ones close now, busy ones right after their answer.
  const stopped = listening.stop();
  // Requests in flight finish: their tasks settle within their budgets, then the middleware stops.
  await fo.close();
  await stopped;
  // Only now nothing uses the slow API or the database (the sequential routes use them without the middleware).
  await api.close();
  db.close();
}

interface Listening {
  server: http.Server;
  /** `server.close()`, and `Connection: close` on the answers in flight and to come. */
  stop(): Promise<void>;
}

function listen(app: Express, port: number, host: string | undefined): Promise<Listening> {
  const server = http.createServer(app);
  // A connection busy when `server.close()` is called would otherwise stay open, idle, until its keep-alive
  // timeout (5 s): its answer must say `Connection: close`.
  const inFlight = new Set<http.ServerResponse>();
  let stopping = false;
  // Before the app's listener, so that the header is set before any answer can go out.
  server.prependListener('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    if (stopping) {
      res.setHeader('Connection', 'close');
      return;
    }
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
  });
  const stop = () => {
    stopping = true;
    for (const res of inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
    return new Promise<void>((done) => server.close(() => done()));
  };
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
