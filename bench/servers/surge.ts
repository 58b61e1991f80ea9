// Surge: a healthy downstream (three in-process timers of 5, 10 and 20 ms) and many clients in a closed loop. The
// package's defaults next to hand-written Promise.all and to the package with its bounds out of the way: nothing
// here is saturated but the server's own CPU, so nothing should be shed.
import type { FanoutMiddleware, FanoutOptions, TaskContext } from 'express-fanout';
import { serve, variantArg } from './app';
import { dependency } from './deps';
import { loadPackage } from './package';
import { SURGE_OPTIONS, SURGE_VARIANTS, surge } from './pressure-params';
import { trackStats } from './stats-record';

const variant = variantArg([...SURGE_VARIANTS]);
const [ms5, ms10, ms20] = surge.timersMs;

// Defined once, not per request (tsx's keepNames would add a `__name()` call per function expression).
const tasks = {
  t5: ({ signal }: TaskContext) => dependency(ms5, 5, signal),
  t10: ({ signal }: TaskContext) => dependency(ms10, 10, signal),
  t20: ({ signal }: TaskContext) => dependency(ms20, 20, signal),
};
const tasksIgnoringTheSignal = {
  t5: () => dependency(ms5, 5),
  t10: () => dependency(ms10, 10),
  t20: () => dependency(ms20, 20),
};

let fo: FanoutMiddleware | undefined;

serve(
  async (app) => {
    if (variant === 'promise-all') {
      app.get('/', async (_req, res) => {
        const [t5, t10, t20] = await Promise.all([
          dependency(ms5, 5),
          dependency(ms10, 10),
          dependency(ms20, 20),
        ]);
        res.json({ t5, t10, t20 });
      });
      return;
    }
    if (variant === 'promise-all-abort') {
      // A careful hand-written deadline: one controller a request, aborted at the budget, its signal to each call.
      app.get('/', async (_req, res, next) => {
        const controller = new AbortController();
        const timer = setTimeout(() => controller.abort(), surge.budgetMs);
        try {
          const { signal } = controller;
          const [t5, t10, t20] = await Promise.all([
            dependency(ms5, 5, signal),
            dependency(ms10, 10, signal),
            dependency(ms20, 20, signal),
          ]);
          res.json({ t5, t10, t20 });
        } catch (error) {
          next(error);
        } finally {
          clearTimeout(timer);
        }
      });
      return;
    }
    const { fanout } = await loadPackage();
    const { options, signal } = SURGE_OPTIONS[variant];
    fo = fanout({ budgetMs: surge.budgetMs, ...options } as FanoutOptions);
    trackStats(fo);
    app.use(fo);
    const route = signal ? tasks : tasksIgnoringTheSignal;
    app.get('/', async (req, res) => {
      res.json(await req.fanout.all(route));
    });
  },
  () => fo?.close() ?? Promise.resolve(),
);
