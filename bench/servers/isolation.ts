// Isolation: one app, two routes. `/slow` calls a downstream of 32 connections x 50 ms three times (213 req/s),
// offered three times that; `/fast` calls a healthy 5 ms dependency. `defaults`: one middleware for both routes;
// `bulkheads`: two middleware instances tuned by hand, one per route, as a user would keep them apart today.
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { FanoutMiddleware, FanoutOptions, TaskContext, Tasks } from 'express-fanout';
import { count, serve, track, variantArg } from './app';
import { Downstream, dependency } from './deps';
import { loadPackage } from './package';
import { ISOLATION_BULKHEADS, ISOLATION_VARIANTS, isolation } from './pressure-params';
import { trackStats } from './stats-record';

const variant = variantArg([...ISOLATION_VARIANTS]);

const downstream = new Downstream(isolation.slowCapacity, isolation.slowCallMs);
const slowCall = ({ signal }: TaskContext) => downstream.call(signal);
const fastCall = ({ signal }: TaskContext) => dependency(isolation.fastMs, 1, signal);

/**
 * `/slow`'s three tasks. Where the package has a limit per dependency (its `stats()` lists `dependencies`), they
 * say they share one (`dependency: 'slowdb'`), as a user would for three calls to one database; before that, the
 * option does not exist (an unknown task option is an error), so they are plain functions.
 */
function slowTasks(perDependency: boolean): Tasks {
  if (!perDependency) return { slow1: slowCall, slow2: slowCall, slow3: slowCall };
  const spec = { run: slowCall, dependency: isolation.slowDependency };
  return { slow1: spec, slow2: { ...spec }, slow3: { ...spec } } as unknown as Tasks;
}
const fastTasks = { fast: fastCall };

const ok = { slow: 0, fast: 0 };
track('downstreamQueue', () => downstream.queued);
track('slowOk', () => ok.slow);
track('fastOk', () => ok.fast);

const instances: FanoutMiddleware[] = [];

serve(
  async (app) => {
    app.use((req, res, next) => {
      const route = req.path === '/slow' ? 'slow' : 'fast';
      res.once('finish', () => {
        if (res.statusCode === 200) ok[route]++;
        count(`${route}${res.statusCode}`);
      });
      next();
    });
    const { fanout } = await loadPackage();
    const make = (options: Record<string, unknown>): FanoutMiddleware => {
      const fo = fanout({ budgetMs: isolation.budgetMs, ...options } as FanoutOptions);
      instances.push(fo);
      return fo;
    };
    let slowMiddleware: RequestHandler;
    let fastMiddleware: RequestHandler;
    if (variant === 'defaults') {
      const fo = make({});
      trackStats(fo);
      slowMiddleware = fastMiddleware = fo;
    } else {
      const slow = make(ISOLATION_BULKHEADS.slow);
      const fast = make(ISOLATION_BULKHEADS.fast);
      trackStats(slow, 'stats.slow.');
      trackStats(fast, 'stats.fast.');
      slowMiddleware = slow;
      fastMiddleware = fast;
    }
    const perDependency = 'dependencies' in (instances[0]!.stats() as object);
    const slow = slowTasks(perDependency);
    app.get('/slow', slowMiddleware, async (req, res) => {
      res.json(await req.fanout.all(slow));
    });
    app.get('/fast', fastMiddleware, async (req, res) => {
      res.json(await req.fanout.all(fastTasks));
    });
    const unexpected: ErrorRequestHandler = (err: { status?: unknown }, _req, _res, next) => {
      if (err.status !== 503 && err.status !== 504) count('unexpectedErrors');
      next(err);
    };
    app.use(unexpected);
  },
  () => Promise.all(instances.map((fo) => fo.close())).then(() => undefined),
);
