// One route with its own budget: `budget(ms)` before the handler sets this request's budget, longer or shorter
// than the middleware's `budgetMs`. A caller's shorter budget header still wins.
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { budget, fanout, gather } from 'express-fanout';

export const app = express();
app.use(fanout({ budgetMs: 500 })); // every route: 500 ms

// The report's query takes about a second: this route gets 5 s.
app.get('/report', budget(5000), gather({ rows: ({ signal }) => sleep(1000, ['row 1'], { signal }) }));

// A health check must answer at once: 50 ms, then the fallback.
app.get(
  '/health',
  budget(50),
  gather({ db: { run: ({ signal }) => sleep(200, 'up', { signal }), fallback: 'unknown' } }),
);

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(`Listening on ${url}\nTry: curl -i ${url}/report\n     curl -i ${url}/health`);
  });
}
