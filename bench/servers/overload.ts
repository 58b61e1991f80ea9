// Scenario 4, overload: a downstream of 32 connections, 50 ms per call, 3 calls per request, offered about three
// times what it can serve. Unbounded, the downstream's queue absorbs everything and latency grows; bounded by the
// package (its `concurrency` equal to the downstream's capacity), the excess is shed at once with a 503.
import type { TaskContext } from 'express-fanout';
import { serve, variantArg } from './app';
import { Downstream } from './deps';
import { loadPackage } from './package';
import { overload } from './params';

const variant = variantArg(['unbounded', 'fanout-all']);

const downstream = new Downstream(overload.capacity, overload.callMs);
// Defined once, not per request (tsx's keepNames would add a `__name()` call per function expression).
const call = ({ signal }: TaskContext) => downstream.call(signal);
const tasks = { a: call, b: call, c: call };

serve(async (app) => {
  switch (variant) {
    case 'unbounded':
      app.get('/', async (_req, res) => {
        const [a, b, c] = await Promise.all([downstream.call(), downstream.call(), downstream.call()]);
        res.json({ a, b, c });
      });
      return;
    case 'fanout-all': {
      const { fanout } = await loadPackage();
      app.use(
        fanout({
          concurrency: overload.capacity,
          maxQueue: overload.maxQueue,
          budgetMs: overload.budgetMs,
        }),
      );
      app.get('/', async (req, res) => {
        res.json(await req.fanout.all(tasks));
      });
      return;
    }
  }
});
