// The mixed scenario: an IO route (three 20 ms calls at once) next to a CPU route (fib on the worker pool), on one
// fan-out middleware. The CPU route gets more work than the pool's thread can do, so its calls queue for the thread.
import { join } from 'node:path';
import { serve, variantArg } from './app';
import { mixed } from './mixed-params';
import { loadPackage } from './package';

variantArg(['pool']);

const delay = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

let close: (() => Promise<void>) | undefined;

serve(
  async (app) => {
    const { fanout } = await loadPackage();
    const fo = fanout({
      concurrency: mixed.concurrency,
      workers: { script: join(__dirname, 'mixed-worker.js'), maxWorkers: mixed.maxWorkers },
    });
    close = () => fo.close();
    app.use(fo);
    const [a, b, c] = mixed.ioCallsMs;
    app.get('/io', async (req, res, next) => {
      try {
        res.json(
          await req.fanout.all({
            a: ({ signal }) => delay(a, signal).then(() => a),
            b: ({ signal }) => delay(b, signal).then(() => b),
            c: ({ signal }) => delay(c, signal).then(() => c),
          }),
        );
      } catch (error) {
        next(error);
      }
    });
    app.get('/cpu', async (req, res, next) => {
      try {
        res.json(await req.fanout.all({ fib: ({ worker }) => worker('fib', [mixed.fibN]) }));
      } catch (error) {
        next(error);
      }
    });
  },
  () => close?.() ?? Promise.resolve(),
);
