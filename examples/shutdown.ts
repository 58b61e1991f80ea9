// Graceful shutdown: stop taking connections, let the requests in flight finish within their budgets, then
// close the middleware: it sheds new tasks (503), drains the admitted ones and ends the worker threads.
import express from 'express';
import { fanout, gather } from 'express-fanout';

const fo = fanout({ budgetMs: 500 });
const app = express();
app.use(fo);
app.get('/', gather({ now: () => new Date().toISOString() }));

const server = app.listen(Number(process.env.PORT ?? 3000));

async function shutdown(signal: NodeJS.Signals): Promise<void> {
  console.log(`${signal}: draining`);
  await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
  await fo.close(); // resolves once every task has settled (or been written off) and the threads are gone
}

process.once('SIGTERM', (signal) => void shutdown(signal).then(() => process.exit(0)));
process.once('SIGINT', (signal) => void shutdown(signal).then(() => process.exit(0)));
