// Prometheus: `npm install prom-client`, then one call registers the middleware's metrics on prom-client's
// default registry (or `{ registry }`), and `/metrics` serves them as Prometheus scrapes them.
import type { AddressInfo } from 'node:net';
import express from 'express';
import { register } from 'prom-client';
import { fanout } from 'express-fanout';
import { prometheus } from 'express-fanout/prometheus';

const fo = fanout({ budgetMs: 500 });
prometheus(fo, { prefix: 'fanout_', maxNames: 100 });

export const app = express();
// Outside the middleware: a scrape uses no budget.
app.get('/metrics', async (_req, res) => {
  res.type(register.contentType).send(await register.metrics());
});
app.use(fo);
app.get('/', async (req, res, next) => {
  try {
    res.json(await req.fanout.all({ a: () => 1, b: async () => 2 }));
  } catch (error) {
    next(error);
  }
});

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(`Listening on ${url}\nTry: curl -i ${url}/\n     curl ${url}/metrics`);
  });
}
