// Graceful shutdown: drain the server (answers in flight go out, requests meanwhile get 503 + Connection: close,
// idle keep-alive connections close), then close the middleware: it sheds new tasks (503), drains the admitted
// ones and ends the worker threads. Bounded: stragglers are cut after the budget + graceMs.
import type { AddressInfo } from 'node:net';
import express from 'express';
import { drainable, fanout, gather } from 'express-fanout';

const budgetMs = 500;
const graceMs = 1000;
export const fo = fanout({ budgetMs, graceMs });
export const app = express();
app.use(fo);
app.get('/', gather({ now: () => new Date().toISOString() }));

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(
      `Listening on ${url}\nTry: curl -i ${url}/\nStop: Ctrl-C (SIGINT) or kill ${process.pid} (SIGTERM)`,
    );
  });
  const drain = drainable(server); // once, right after creating the server

  const shutdown = async (signal: NodeJS.Signals): Promise<void> => {
    console.log(`${signal}: draining`);
    await drain.drain({ timeoutMs: budgetMs + graceMs });
    await fo.close(); // resolves once every task has settled (or been written off) and the threads are gone
    console.log('closed');
  };
  // Installed before the first request can arrive, so a signal never finds the server without them.
  process.once('SIGTERM', (signal) => void shutdown(signal).then(() => process.exit(0)));
  process.once('SIGINT', (signal) => void shutdown(signal).then(() => process.exit(0)));
}
