// Scenario 1, the story's endpoint: three independent IO calls of 100, 200 and 300 ms.
import type { TaskContext } from 'express-fanout';
import { serve, variantArg } from './app';
import { dependency } from './deps';
import { loadPackage } from './package';
import { story } from './params';

const variant = variantArg(['sequential', 'promise-all', 'fanout-all', 'gather']);

const [fileMs, dbMs, apiMs] = story.dependenciesMs;
const file = (signal?: AbortSignal) => dependency(fileMs, 'file contents', signal);
const db = (signal?: AbortSignal) => dependency(dbMs, [{ id: 1, name: 'row' }], signal);
const api = (signal?: AbortSignal) => dependency(apiMs, { ok: true }, signal);

// Defined once, not per request: under tsx (esbuild's keepNames) each function expression evaluated in a handler
// pays a `__name()` call that compiled code does not, and only the fan-out variants would pay it.
const tasks = {
  file: ({ signal }: TaskContext) => file(signal),
  db: ({ signal }: TaskContext) => db(signal),
  api: ({ signal }: TaskContext) => api(signal),
};

serve(async (app) => {
  switch (variant) {
    case 'sequential':
      app.get('/', async (_req, res) => {
        const a = await file();
        const b = await db();
        const c = await api();
        res.json({ file: a, db: b, api: c });
      });
      return;
    case 'promise-all':
      app.get('/', async (_req, res) => {
        const [a, b, c] = await Promise.all([file(), db(), api()]);
        res.json({ file: a, db: b, api: c });
      });
      return;
    case 'fanout-all': {
      const { fanout } = await loadPackage();
      app.use(fanout({ concurrency: story.concurrency }));
      app.get('/', async (req, res) => {
        res.json(await req.fanout.all(tasks));
      });
      return;
    }
    case 'gather': {
      const { fanout, gather } = await loadPackage();
      app.use(fanout({ concurrency: story.concurrency }));
      app.get('/', gather(tasks));
      return;
    }
  }
});
