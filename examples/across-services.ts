// A service in a chain: it calls the next one with ctx.fetch(), which sends the budget left minus the
// propagation margin (a few ms, plus the transit it learned for each callee), passes the attempt's signal, and
// maps the callee's 504/503/5xx onto timeout/shed/failure.
// Payments take at most 100 concurrent calls from the whole fleet: a limit counted on Redis.
import express from 'express';
import Redis from 'ioredis';
import { fanout, RedisLimitStore } from 'express-fanout';

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const fo = fanout({
  budgetMs: 800,
  limits: { payments: { concurrency: 100, store: new RedisLimitStore({ client: redis }) } },
});

export const app = express();
app.use(fo);
app.get('/checkout/:id', async (req, res, next) => {
  try {
    const { cart, payment } = await req.fanout.all({
      cart: async (ctx) => (await ctx.fetch(`http://cart.internal/carts/${req.params.id}`)).json(),
      payment: {
        limit: 'payments', // waits for a fleet-wide permit, within the budget
        retries: { max: 1 }, // a 503 is retried only after its Retry-After, a 499 never
        run: async (ctx) => (await ctx.fetch(`http://payments.internal/authorize/${req.params.id}`)).json(),
      },
    });
    res.json({ cart, payment });
  } catch (error) {
    next(error); // a callee's 504 answers 504 here, its 503 answers 503 with its Retry-After
  }
});
