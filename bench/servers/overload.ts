// Scenario 4, overload: a downstream of 32 connections, 50 ms per call, 3 calls per request, offered about three
// times what it can serve. The package does not know the downstream's capacity (nothing in the default variant
// says 32): unbounded, the downstream's queue absorbs everything and latency grows; with the package's defaults
// the limit is found from latency and what cannot finish within the budget is shed at once with a 503.
// `GET /control/capacity?n=16` resizes the downstream (the step-change run); `limit`, `capacity` and the
// downstream's queue are sampled every 100 ms for the trace.
import type { ErrorRequestHandler } from 'express';
import type { FanoutMiddleware, FanoutOptions, TaskContext } from 'express-fanout';
import { count, serve, track, variantArg } from './app';
import { Downstream } from './deps';
import { loadPackage } from './package';
import { OVERLOAD_OPTIONS, OVERLOAD_VARIANTS, overload } from './params';

const variant = variantArg([...OVERLOAD_VARIANTS]);

const downstream = new Downstream(overload.capacity, overload.callMs);
// Defined once, not per request (tsx's keepNames would add a `__name()` call per function expression).
const call = ({ signal }: TaskContext) => downstream.call(signal);
const tasks = { a: call, b: call, c: call };

let ok = 0;
track('capacity', () => downstream.capacity);
track('downstreamQueue', () => downstream.queued);
track('ok', () => ok);

serve(async (app) => {
  app.use((_req, res, next) => {
    res.once('finish', () => {
      if (res.statusCode === 200) ok++;
    });
    next();
  });
  app.get('/control/capacity', (req, res) => {
    const n = Number(req.query.n);
    if (!Number.isInteger(n) || n < 1) {
      res.status(400).json({ error: 'n must be an integer >= 1' });
      return;
    }
    downstream.resize(n);
    res.json({ capacity: n });
  });
  if (variant === 'unbounded') {
    app.get('/', async (_req, res) => {
      const [a, b, c] = await Promise.all([downstream.call(), downstream.call(), downstream.call()]);
      res.json({ a, b, c });
    });
    return;
  }
  const { fanout } = await loadPackage();
  const fo: FanoutMiddleware = fanout({
    budgetMs: overload.budgetMs,
    ...OVERLOAD_OPTIONS[variant],
  } as FanoutOptions);
  track('limit', () => (fo.stats() as { limit?: number }).limit ?? Number.NaN);
  track('queued', () => fo.stats().queued);
  app.use(fo);
  app.get('/', async (req, res) => {
    res.json(await req.fanout.all(tasks));
  });
  // Where the 503s come from: shed at admission (at once) or dropped from the queue (later).
  const dropped: ErrorRequestHandler = (err: { message?: unknown }, _req, _res, next) => {
    if (typeof err.message === 'string' && err.message.includes('when its turn came')) count('dropped');
    next(err);
  };
  app.use(dropped);
});
