// OpenTelemetry: with the SDK and the http/express instrumentations set up (see docs/observability.md), one call gives
// every task a span under its request's span; a fetch made inside a task is a child of the task's span.
import express from 'express';
import { fanout } from 'express-fanout';
import { otel } from 'express-fanout/otel';

const fo = fanout({ budgetMs: 500 });
otel(fo);

export const app = express();
app.use(fo);
app.get('/users/:id', async (req, res, next) => {
  try {
    const { user, orders } = await req.fanout.all({
      user: ({ signal }) => fetch(`http://users.internal/${req.params.id}`, { signal }).then((r) => r.json()),
      orders: {
        run: ({ signal }) =>
          fetch(`http://orders.internal/?user=${req.params.id}`, { signal }).then((r) => r.json()),
        fallback: [],
      },
    });
    res.json({ user, orders });
  } catch (error) {
    next(error);
  }
});
