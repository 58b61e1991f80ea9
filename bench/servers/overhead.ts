// Scenario 2, overhead: three zero-delay async tasks, so the route measures the machinery around them.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { serve, variantArg } from './app';
import { loadPackage } from './package';

// The last three are `Promise.all` behind a middleware, for bench/profile/paired.ts to take the package apart: a
// no-op one, one adding a `close` listener to the response, and `fanout()` itself (its handler not using it).
const variant = variantArg([
  'constant',
  'promise-all',
  'p-limit',
  'fanout-all',
  'fanout-all-server-timing',
  'noop-middleware',
  'close-listener',
  'fanout-middleware',
]);

const task = async (value: number): Promise<number> => value;
// Defined once, not per request: under tsx (esbuild's keepNames) each function expression evaluated in a handler
// pays a `__name()` call that compiled code does not, and only the fan-out variants would pay it.
const tasks = { a: () => task(1), b: () => task(2), c: () => task(3) };

const promiseAll = async (_req: unknown, res: { json(body: unknown): void }): Promise<void> => {
  const [a, b, c] = await Promise.all([task(1), task(2), task(3)]);
  res.json({ a, b, c });
};

// BENCH_CPU_PROFILE=<file>: a CPU profile of the server from 2 s after its start (past the warm-up's beginning) to
// its stop, written there (bench/profile/overhead.ts; `--cpu-prof` is not allowed in NODE_OPTIONS).
const profileTo = process.env.BENCH_CPU_PROFILE;
let profiler: Session | undefined;
if (profileTo) {
  setTimeout(() => {
    profiler = new Session();
    profiler.connect();
    profiler.post('Profiler.enable');
    profiler.post('Profiler.setSamplingInterval', { interval: 200 });
    profiler.post('Profiler.start');
  }, 2000).unref();
}

function writeProfile(): Promise<void> {
  const session = profiler;
  if (!session || !profileTo) return Promise.resolve();
  return new Promise((resolve) => {
    session.post('Profiler.stop', (error, result) => {
      if (!error) writeFileSync(profileTo, JSON.stringify(result.profile));
      session.disconnect();
      resolve();
    });
  });
}

serve(async (app) => {
  switch (variant) {
    case 'constant':
      app.get('/', (_req, res) => {
        res.json({ a: 1, b: 2, c: 3 });
      });
      return;
    case 'promise-all':
      app.get('/', promiseAll);
      return;
    case 'noop-middleware':
      app.use((_req, _res, next) => next());
      app.get('/', promiseAll);
      return;
    case 'close-listener':
      app.use((_req, res, next) => {
        res.on('close', () => undefined);
        next();
      });
      app.get('/', promiseAll);
      return;
    case 'fanout-middleware': {
      const { fanout } = await loadPackage();
      app.use(fanout({ serverTiming: false }));
      app.get('/', promiseAll);
      return;
    }
    case 'p-limit': {
      // p-limit 7 is ESM-only; one limiter for the process, as the package has one scheduler.
      const { default: pLimit } = await import('p-limit');
      const limit = pLimit(256);
      app.get('/', async (_req, res) => {
        const [a, b, c] = await Promise.all([limit(task, 1), limit(task, 2), limit(task, 3)]);
        res.json({ a, b, c });
      });
      return;
    }
    case 'fanout-all':
    case 'fanout-all-server-timing': {
      const { fanout } = await loadPackage();
      app.use(fanout({ serverTiming: variant === 'fanout-all-server-timing' }));
      app.get('/', async (req, res) => {
        res.json(await req.fanout.all(tasks));
      });
      return;
    }
  }
}, writeProfile);
