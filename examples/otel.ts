// OpenTelemetry: with the SDK and the http/express instrumentations set up (see docs/observability.md), one call
// gives every task a span under its request's span; a fetch made inside a task is a child of the task's span.
// USERS_URL and ORDERS_URL name the services it calls.
import type { AddressInfo } from 'node:net';
import express from 'express';
import { fanout } from 'express-fanout';
import { otel } from 'express-fanout/otel';

const usersUrl = process.env.USERS_URL ?? 'http://users.internal';
const ordersUrl = process.env.ORDERS_URL ?? 'http://orders.internal';

export const fo = fanout({ budgetMs: 500 });
otel(fo);

export const app = express();
app.use(fo);
app.get('/users/:id', async (req, res, next) => {
  try {
    const { user, orders } = await req.fanout.all({
      user: ({ signal }) => fetch(`${usersUrl}/${req.params.id}`, { signal }).then((r) => r.json()),
      orders: {
        run: ({ signal }) => fetch(`${ordersUrl}/?user=${req.params.id}`, { signal }).then((r) => r.json()),
        fallback: [],
      },
    });
    res.json({ user, orders });
  } catch (error) {
    next(error);
  }
});

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(`Listening on ${url}\nTry: curl -i ${url}/users/1   (a 502 until USERS_URL answers)`);
  });
}
