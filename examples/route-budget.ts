// One route with its own budget: `budget(ms)` before the handler sets this request's budget, longer or shorter
// than the middleware's `budgetMs`. A caller's shorter budget header still wins.
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
