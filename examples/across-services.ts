// A service in a chain: it calls the next one with ctx.fetch(), which sends the budget left minus the
// propagation margin (a few ms, plus the transit it learned for each callee), passes the attempt's signal, and
// maps the callee's 504/503/5xx onto timeout/shed/failure.
// Payments take at most 100 concurrent calls from the whole fleet: a limit counted on Redis (REDIS_URL; without
// it, in this process only). CART_URL and PAYMENTS_URL name the services it calls.
import type { AddressInfo } from 'node:net';
import express from 'express';
import Redis from 'ioredis';
import { fanout, MemoryLimitStore, RedisLimitStore } from 'express-fanout';

const cartUrl = process.env.CART_URL ?? 'http://cart.internal';
const paymentsUrl = process.env.PAYMENTS_URL ?? 'http://payments.internal';
const redisUrl = process.env.REDIS_URL;
const store = redisUrl ? new RedisLimitStore({ client: new Redis(redisUrl) }) : new MemoryLimitStore();

export const fo = fanout({
  budgetMs: 800,
  limits: { payments: { concurrency: 100, store } },
});

export const app = express();
app.use(fo);
app.get('/checkout/:id', async (req, res, next) => {
  try {
    const { cart, payment } = await req.fanout.all({
      cart: async (ctx) => (await ctx.fetch(`${cartUrl}/carts/${req.params.id}`)).json(),
      payment: {
        limit: 'payments', // waits for a fleet-wide permit, within the budget
        retries: { max: 1 }, // a 503 is retried only after its Retry-After, a 499 never
        run: async (ctx) => (await ctx.fetch(`${paymentsUrl}/authorize/${req.params.id}`)).json(),
      },
    });
    res.json({ cart, payment });
  } catch (error) {
    next(error); // a callee's 504 answers 504 here, its 503 answers 503 with its Retry-After
  }
});

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(
      `Listening on ${url}\nTry: curl -i ${url}/checkout/7   (a 502 until CART_URL and PAYMENTS_URL answer)`,
    );
  });
}
