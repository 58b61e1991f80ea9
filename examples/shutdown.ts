// Graceful shutdown: drain the server (answers in flight go out, requests meanwhile get 503 + Connection: close,
// idle keep-alive connections close), then close the middleware: it sheds new tasks (503), drains the admitted
// ones and ends the worker threads. Bounded: stragglers are cut after the budget + graceMs.
import express from 'express';
import { drainable, fanout, gather } from 'express-fanout';

const budgetMs = 500;
const graceMs = 1000;
const fo = fanout({ budgetMs, graceMs });
const app = express();
app.use(fo);
app.get('/', gather({ now: () => new Date().toISOString() }));

const server = app.listen(Number(process.env.PORT ?? 3000));
const drain = drainable(server); // once, right after creating the server

async function shutdown(signal: NodeJS.Signals): Promise<void> {
  console.log(`${signal}: draining`);
  await drain.drain({ timeoutMs: budgetMs + graceMs });
  await fo.close(); // resolves once every task has settled (or been written off) and the threads are gone
}

process.once('SIGTERM', (signal) => void shutdown(signal).then(() => process.exit(0)));
process.once('SIGINT', (signal) => void shutdown(signal).then(() => process.exit(0)));
