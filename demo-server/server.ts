// `npm start`: the demo server on PORT (default 3000), until SIGINT or SIGTERM; its data in DEMO_DATA_DIR (default
// demo-server/data). With WEB_CONCURRENCY > 1 it runs under node:cluster: that many workers share the port, and
// the primary forwards the signal (cluster.ts).
import cluster from 'node:cluster';
import { ROUTES } from './app';
import { runPrimary, webConcurrency } from './cluster';
import { BUDGET_MS, createDemo, type Demo } from './demo';

/** Longest a shutdown may take (requests in flight finish within their budget) before the process gives up. */
const SHUTDOWN_LIMIT_MS = 10_000;

async function main(): Promise<void> {
  const port = parsePort(process.env.PORT);
  // The signal handlers are installed in the tick that starts the demo, before it can listen: a SIGTERM during
  // the start-up (the warm-up requests run once the port is open) waits for the start to finish and then stops
  // the demo as any other, the requests in flight answered, instead of killing the process under them.
  const starting: Promise<Demo> = createDemo({
    port,
    dataDir: process.env.DEMO_DATA_DIR || undefined,
    onListening: (url) => console.log(`listening on ${url}; warming up the worker threads`),
  });
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    process.off('SIGINT', stop).off('SIGTERM', stop);
    stopping = true;
    console.log(`${signal}: finishing the requests in flight, then stopping (again to force)`);
    const limit = setTimeout(() => {
      console.error(`Still not stopped after ${SHUTDOWN_LIMIT_MS} ms; exiting anyway`);
      process.exit(1);
    }, SHUTDOWN_LIMIT_MS);
    limit.unref();
    starting
      .then((demo) => demo.close())
      .then(
        () => {
          clearTimeout(limit);
          console.log('stopped');
          process.exit(0);
        },
        (error: unknown) => {
          console.error('shutdown failed:', error);
          process.exit(1);
        },
      );
  };
  process.on('SIGINT', stop).on('SIGTERM', stop);
  const demo = await starting;
  if (stopping) return; // stop() closes it
  const { setup } = demo;
  const data = setup.databaseCreatedMs === null ? 'found' : `created in ${setup.databaseCreatedMs} ms`;
  const width = Math.max(...ROUTES.map(([path]) => path.length));
  console.log(`express-fanout demo on ${demo.url} (budget ${BUDGET_MS} ms per request)`);
  for (const [path, what] of ROUTES) console.log(`  curl -s ${demo.url}${path.padEnd(width)}  ${what}`);
  console.log(`slow API (own thread): ${demo.apiUrl}/?ms=300`);
  console.log(`data: ${demo.dataDir} (database ${data}; one query takes ${setup.queryMs} ms here)`);
  console.log(`worker pool: ${setup.workerScript} (the query and /cpu's fib run there)`);
  console.log('Ctrl-C stops it.');
}

function parsePort(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 3000;
  const port = /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(port <= 65535)) throw new Error(`Expected PORT to be an integer from 0 to 65535, got \`${raw}\``);
  return port;
}

const workers = webConcurrency(process.env.WEB_CONCURRENCY);
if (workers > 1 && cluster.isPrimary) {
  console.log(`express-fanout demo: ${workers} workers (WEB_CONCURRENCY); every bound is per worker`);
  runPrimary({ workers, shutdownLimitMs: SHUTDOWN_LIMIT_MS });
} else {
  main().catch((error: unknown) => {
    console.error('The demo could not start:', error);
    process.exit(1);
  });
}
