// Workers overload: each request is one CPU step of about 10 ms on the package's worker threads
// (`req.fanout.worker('burn', [n])`, n calibrated by the runner), offered three times what the pool can do.
// `defaults` next to a worker queue tuned by hand (`workers.maxQueueSize: 4`).
import { join } from 'node:path';
import type { FanoutMiddleware, FanoutOptions } from 'express-fanout';
import { serve, variantArg } from './app';
import { loadPackage } from './package';
import { WORKERS_OPTIONS, WORKERS_VARIANTS, burnPerMs, workersOverload } from './pressure-params';
import { trackAnswers, trackStats } from './stats-record';

const variant = variantArg([...WORKERS_VARIANTS]);
const iterations = Math.round(burnPerMs() * workersOverload.stepMs);

let fo: FanoutMiddleware | undefined;

serve(
  async (app) => {
    trackAnswers(app);
    const { fanout } = await loadPackage();
    fo = fanout({
      budgetMs: workersOverload.budgetMs,
      // The script is plain JS: without `execArgv: []` each thread would inherit the server's `--require tsx/cjs`
      // and load tsx, which on a crowded core makes a thread that replaces a terminated one (a call past its
      // deadline) start so slowly that the next call misses its deadline too.
      workers: { script: join(__dirname, 'cpu-worker.js'), execArgv: [], ...WORKERS_OPTIONS[variant] },
    } as FanoutOptions);
    trackStats(fo);
    app.use(fo);
    app.get('/', async (req, res) => {
      res.json({ value: await req.fanout.worker('burn', [iterations]) });
    });
  },
  () => fo?.close() ?? Promise.resolve(),
);
