// Scenario 5, blocking work: `/heavy` runs a CPU-heavy step (about 20 ms of one core), inline on the event loop or
// on the package's worker pool, while `/light` (a constant) is hit at the same time.
import { join } from 'node:path';
import { serve, variantArg } from './app';
import { burn } from './cpu.js';
import { loadPackage } from './package';
import { blocking } from './params';

const variant = variantArg(['inline', 'pool']);

let close: (() => Promise<void>) | undefined;

serve(
  async (app) => {
    app.get('/light', (_req, res) => {
      res.json({ ok: true });
    });
    switch (variant) {
      case 'inline':
        app.get('/heavy', (_req, res) => {
          res.json({ value: burn(blocking.iterations) });
        });
        return;
      case 'pool': {
        const { fanout } = await loadPackage();
        const fo = fanout({ workers: { script: join(__dirname, 'cpu-worker.js') } });
        close = () => fo.close();
        app.use(fo);
        app.get('/heavy', async (req, res) => {
          res.json({ value: await req.fanout.worker('burn', [blocking.iterations]) });
        });
        return;
      }
    }
  },
  () => close?.() ?? Promise.resolve(),
);
