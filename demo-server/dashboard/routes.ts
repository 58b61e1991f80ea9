// The dashboard: `GET /dashboard` (a plain HTML page and its script, no build step, nothing from outside the
// machine), `GET /events` (the middleware's stats() and the event-loop delay, twice a second, as server-sent
// events) and `POST /dashboard/burst` (500 requests at once, from the server itself: a browser opens at most
// six connections to one host, so a burst from the page would queue in the browser, not in the middleware).
import { existsSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import express, { type RequestHandler } from 'express';
import type { FanoutMiddleware } from 'express-fanout';
import { monitorLoopDelay } from '../loop-delay';

/** How often `/events` sends stats(), ms. */
export const EVENT_PERIOD_MS = 500;
/** Requests of one burst, and the route they go to (a tight budget with a fallback: sheds and fallbacks). */
export const BURST_SIZE = 500;
export const BURST_PATH = '/budget';

export interface Dashboard {
  handler: RequestHandler;
  /** Ends every open event stream and stops sampling; the server's close() can then finish. */
  close(): void;
}

/** What a burst reports: the answers by status, the fallbacks seen in their Server-Timing, and how long it took. */
export interface BurstReport {
  requests: number;
  statuses: Record<string, number>;
  fallbacks: number;
  ms: number;
}

export function createDashboard(fo: FanoutMiddleware): Dashboard {
  const dir = sourceDir();
  const page = readFileSync(join(dir, 'index.html'), 'utf8');
  const script = readFileSync(join(dir, 'dashboard.js'), 'utf8');
  const streams = new Set<ServerResponse>();
  // Its own monitor: `/stats` reads (and resets) the app's one, and the two would cut each other's windows.
  const loopDelay = monitorLoopDelay();
  let timer: NodeJS.Timeout | null = null;
  let closed = false;

  const tick = (): void => {
    const data = `data: ${JSON.stringify({ ...fo.stats(), eventLoopDelayMs: loopDelay.read() })}\n\n`;
    for (const res of streams) res.write(data);
  };

  const router = express.Router();
  router.get('/dashboard', (_req, res) => {
    res.type('html').set('Cache-Control', 'no-store').send(page);
  });
  // Browsers ask for one with every page: a 204 instead of a 404 in the console.
  router.get('/favicon.ico', (_req, res) => {
    res.set('Cache-Control', 'max-age=86400').status(204).end();
  });
  router.get('/dashboard/dashboard.js', (_req, res) => {
    res.type('js').set('Cache-Control', 'no-store').send(script);
  });
  router.get('/events', (req, res) => {
    if (closed) {
      res.status(503).end();
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
    });
    res.write('retry: 1000\n\n');
    streams.add(res);
    if (timer === null) {
      timer = setInterval(tick, EVENT_PERIOD_MS);
      timer.unref();
    }
    tick();
    req.on('close', () => {
      streams.delete(res);
      if (streams.size === 0 && timer !== null) {
        clearInterval(timer);
        timer = null;
      }
    });
  });
  router.post('/dashboard/burst', (req, res, next) => {
    const port = req.socket.localPort;
    burst(`http://127.0.0.1:${port}${BURST_PATH}`).then((report) => res.json(report), next);
  });

  return {
    handler: router,
    close() {
      closed = true;
      if (timer !== null) clearInterval(timer);
      timer = null;
      for (const res of streams) res.end();
      streams.clear();
      loopDelay.close();
    },
  };
}

/** Fires BURST_SIZE requests at once and counts their answers. */
async function burst(url: string): Promise<BurstReport> {
  const started = performance.now();
  const statuses: Record<string, number> = Object.create(null) as Record<string, number>;
  let fallbacks = 0;
  await Promise.all(
    Array.from({ length: BURST_SIZE }, async () => {
      let status = 'error';
      try {
        const response = await fetch(url);
        await response.arrayBuffer();
        status = String(response.status);
        if (/desc="fallback/.test(response.headers.get('server-timing') ?? '')) fallbacks++;
      } catch {
        // A connection refused or reset counts as `error`.
      }
      statuses[status] = (statuses[status] ?? 0) + 1;
    }),
  );
  return {
    requests: BURST_SIZE,
    statuses: { ...statuses },
    fallbacks,
    ms: Math.round(performance.now() - started),
  };
}

/** This folder in the sources: the page and its script are served from there, also when running from build/. */
function sourceDir(): string {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const candidate = join(dir, 'demo-server', 'dashboard');
    if (existsSync(join(dir, 'package.json')) && existsSync(join(candidate, 'index.html'))) return candidate;
    if (existsSync(join(__dirname, 'index.html'))) return __dirname;
    if (dirname(dir) === dir) throw new Error(`No demo-server/dashboard/index.html above ${__dirname}`);
  }
}
