// Quick start: one request's three IO steps (a file, two calls to a remote service) fanned out under a 500 ms
// budget, with a fallback for the slowest. Runs against the demo's slow API (`GET /?ms=N` answers after N ms):
//   SLOW_API_URL=http://127.0.0.1:<port> npx tsx examples/quick-start.ts   (npm start prints the slow API's URL)
import { readFile } from 'node:fs/promises';
import express from 'express';
import { fanout, gather, type TaskContext } from 'express-fanout';

/** A remote call that stops at the task's deadline and passes the remaining budget on. */
async function callApi(url: string, { signal, headers }: TaskContext): Promise<unknown> {
  const res = await fetch(url, { signal, headers: headers() });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return res.json();
}

export function createApp(apiUrl: string) {
  const app = express();
  const fo = fanout({ budgetMs: 500 }); // options are validated here, once
  app.use(fo); // before every route that uses req.fanout or gather()

  app.get('/profile', async (req, res, next) => {
    try {
      const recoMs = Number(req.query.recoMs ?? 300);
      const { pkg, orders, recommendations } = await req.fanout.all({
        pkg: ({ signal }) => readFile('package.json', { signal, encoding: 'utf8' }).then(JSON.parse),
        orders: { run: (ctx) => callApi(`${apiUrl}/?ms=100`, ctx), timeoutMs: 200 },
        recommendations: {
          run: (ctx) => callApi(`${apiUrl}/?ms=${recoMs}`, ctx),
          fallback: [], // optional: an empty list if it fails, times out or is shed
        },
      });
      res.json({ name: pkg.name, orders, recommendations });
    } catch (err) {
      next(err); // Express 4 does not forward a rejected async handler by itself; Express 5 does
    }
  });

  const user = (ctx: TaskContext) => callApi(`${apiUrl}/?ms=50`, ctx);
  const news = {
    run: (ctx: TaskContext) => callApi(`${apiUrl}/?ms=400`, ctx),
    timeoutMs: 100,
    fallback: null,
  };
  // The whole endpoint in one line: runs all() and sends the merged JSON, or passes the error to next().
  app.get('/', gather({ user, news }));

  return { app, fo };
}

if (require.main === module) {
  const { app, fo } = createApp(process.env.SLOW_API_URL ?? 'http://127.0.0.1:4000');
  const server = app.listen(3001, () => console.log('http://localhost:3001/profile'));
  process.on('SIGTERM', () => server.close(() => fo.close())); // stop admitting, drain, end worker threads
}
