// Loop overload: three 10 ms IO tasks, then about 4 ms of CPU on the event loop itself (`burn()`, calibrated by the
// runner), offered three times what the loop can do. Here the loop is the queue, not a dependency.
import type { FanoutMiddleware, FanoutOptions, TaskContext } from 'express-fanout';
import { serve, variantArg } from './app';
import { burn } from './cpu.js';
import { dependency } from './deps';
import { loadPackage } from './package';
import { LOOP_VARIANTS, burnPerMs, loopOverload } from './pressure-params';
import { trackAnswers, trackStats } from './stats-record';

const variant = variantArg([...LOOP_VARIANTS]);
const iterations = Math.round(burnPerMs() * loopOverload.cpuMs);
const { ioMs } = loopOverload;

const io = ({ signal }: TaskContext) => dependency(ioMs, 1, signal);
const tasks = { a: io, b: io, c: io };

let fo: FanoutMiddleware | undefined;

serve(
  async (app) => {
    trackAnswers(app);
    if (variant === 'promise-all') {
      app.get('/', async (_req, res) => {
        const [a, b, c] = await Promise.all([dependency(ioMs, 1), dependency(ioMs, 1), dependency(ioMs, 1)]);
        res.json({ a, b, c, cpu: burn(iterations) });
      });
      return;
    }
    const { fanout } = await loadPackage();
    fo = fanout({ budgetMs: loopOverload.budgetMs } as FanoutOptions);
    trackStats(fo);
    app.use(fo);
    app.get('/', async (req, res) => {
      const values = await req.fanout.all(tasks);
      res.json({ ...values, cpu: burn(iterations) });
    });
  },
  () => fo?.close() ?? Promise.resolve(),
);
