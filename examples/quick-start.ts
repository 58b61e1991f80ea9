// Quick start: one request's three IO steps (a file, two calls to a remote service) fanned out under a 500 ms
// budget, with a fallback for the slowest. `npx tsx examples/quick-start.ts` runs it against a stand-in of a slow
// API (`GET /?ms=N` answers after N ms); SLOW_API_URL=<url> against the demo's (npm start prints its URL).
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
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

/** A stand-in for a slow API, in this process: `GET /?ms=N` answers `{"delayMs":N}` after N ms. Unref'd: it
 * does not keep the process alive once the app's server has closed. */
function slowApi(): Promise<string> {
  const server = http.createServer((req, res) => {
    const ms = Number(new URL(req.url ?? '/', 'http://localhost').searchParams.get('ms') ?? 0);
    setTimeout(
      () => res.setHeader('content-type', 'application/json').end(JSON.stringify({ delayMs: ms })),
      ms,
    );
  });
  return new Promise((resolve) =>
    server.unref().listen(0, () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
  );
}

if (require.main === module) {
  void (async () => {
    const { app, fo } = createApp(process.env.SLOW_API_URL ?? (await slowApi()));
    const server = app.listen(Number(process.env.PORT ?? 3001), () => {
      const url = `http://localhost:${(server.address() as AddressInfo).port}`;
      console.log(
        `Listening on ${url}\nTry: curl -i ${url}/profile\n     curl -i '${url}/profile?recoMs=2000'`,
      );
    });
    process.once('SIGTERM', () => server.close(() => void fo.close())); // stop admitting, drain, end worker threads
  })();
}
