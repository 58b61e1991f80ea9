// A stand-in for a remote HTTP service whose latency is set per call: `GET /?ms=300` answers after 300 ms and
// echoes the budget header it received, to show the budget travelling with outbound calls.
//
// It runs on its own worker thread, with its own event loop, as a remote service would. On the demo's thread,
// anything that holds the event loop (`/cpu/inline`'s computation, a synchronous query) would also hold this
// "remote" service's timers, and the demo's measurements would blame the service for the demo's own delays.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { threadEntry } from './thread';

const DEFAULT_DELAY_MS = 300;
export const MAX_DELAY_MS = 10_000;
const BUDGET_HEADER = 'x-request-budget-ms';

/** What the slow API answers. */
export interface SlowApiAnswer {
  service: 'slow-api';
  delayMs: number;
  /** The `x-request-budget-ms` header the call carried, as received, or `null`. */
  budgetHeader: string | null;
}

/** The service itself: `GET /?ms=<0..10000>`. */
export function createSlowApiServer(): http.Server {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://slow-api');
    if (req.method !== 'GET' || url.pathname !== '/') {
      send(res, 404, { error: 'Not found: try GET /?ms=300' });
      return;
    }
    const raw = url.searchParams.get('ms');
    const delayMs = raw === null ? DEFAULT_DELAY_MS : /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!(delayMs <= MAX_DELAY_MS)) {
      send(res, 400, { error: `Expected \`ms\` to be an integer from 0 to ${MAX_DELAY_MS}, got \`${raw}\`` });
      return;
    }
    const budget = req.headers[BUDGET_HEADER];
    const answer: SlowApiAnswer = {
      service: 'slow-api',
      delayMs,
      budgetHeader: typeof budget === 'string' ? budget : null,
    };
    const timer = setTimeout(send, delayMs, res, 200, answer);
    // 'close' comes after the answer too; before it, it means the caller gave up (an aborted fetch).
    res.once('close', () => clearTimeout(timer));
  });
  // Callers keep their connections for the time this announces (`Keep-Alive: timeout=60`), not 5 s: a demo
  // request after a pause then finds a warm connection, as calls to a busy remote service do.
  server.keepAliveTimeout = 60_000;
  return server;
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/**
 * Calls the slow API: `fetch` with the caller's signal (an abort closes the connection, and the service stops
 * waiting) and headers (the fan-out's `ctx.headers()` carries the remaining budget).
 */
export async function callSlowApi(
  apiUrl: string,
  delayMs: number,
  init: { signal?: AbortSignal; headers?: Record<string, string> } = {},
): Promise<SlowApiAnswer> {
  const response = await fetch(`${apiUrl}/?ms=${delayMs}`, init);
  if (!response.ok) throw new Error(`The slow API answered ${response.status} ${response.statusText}`);
  return (await response.json()) as SlowApiAnswer;
}

export interface SlowApi {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Ends the thread (and with it the server and its connections). */
  close(): Promise<void>;
}

interface ThreadData {
  role: 'slow-api';
  port: number;
  host: string;
}

/** Starts the slow API on its own thread; resolves once it listens. */
export function startSlowApi(options: { port?: number; host?: string } = {}): Promise<SlowApi> {
  const data: ThreadData = { role: 'slow-api', port: options.port ?? 0, host: options.host ?? '127.0.0.1' };
  const { filename, options: threadOptions } = threadEntry(__filename);
  const worker = new Worker(filename, { ...threadOptions, workerData: data });
  return new Promise((resolve, reject) => {
    const settle = () => {
      worker.off('message', onMessage).off('error', onError).off('exit', onExit);
    };
    const onMessage = (message: { port: number }) => {
      settle();
      // From now on a failure of the thread only fails the calls to it (the demo answers 502 or a fallback).
      worker.on('error', (error) => console.error('slow API thread failed:', error));
      resolve({
        url: `http://${data.host}:${message.port}`,
        close: () => worker.terminate().then(() => undefined),
      });
    };
    const onError = (error: Error) => {
      settle();
      void worker.terminate();
      reject(error);
    };
    const onExit = (code: number) => {
      settle();
      reject(new Error(`The slow API thread exited with code ${code} before listening`));
    };
    worker.on('message', onMessage).on('error', onError).on('exit', onExit);
  });
}

function isThreadData(value: unknown): value is ThreadData {
  return typeof value === 'object' && value !== null && (value as { role?: unknown }).role === 'slow-api';
}

// The thread's side: this same module, loaded by `startSlowApi()` on a worker thread.
if (!isMainThread && parentPort && isThreadData(workerData)) {
  const port = parentPort;
  const server = createSlowApiServer();
  server.listen(workerData.port, workerData.host, () => {
    port.postMessage({ port: (server.address() as AddressInfo).port });
  });
}
