// Scenario 3, heavy tail: three dependencies of 20 ms, of which 5% of calls take 2 s.
import type { TaskContext } from 'express-fanout';
import { count, serve, variantArg } from './app';
import { tailDependency } from './deps';
import { loadPackage } from './package';
import { heavyTail } from './params';
import { fallbackRoute } from './routes';

const variant = variantArg(['promise-all', 'fanout-all']);

serve(async (app) => {
  switch (variant) {
    case 'promise-all':
      app.get('/', async (_req, res) => {
        const [a, b, c] = await Promise.all([tailDependency(), tailDependency(), tailDependency()]);
        count('requests');
        count('calls', 3);
        res.json({ a, b, c });
      });
      return;
    case 'fanout-all': {
      const { fanout } = await loadPackage();
      app.use(fanout({ budgetMs: heavyTail.budgetMs }));
      // Defined once, not per request (tsx's keepNames would add a `__name()` call per function expression).
      const optional = { run: ({ signal }: TaskContext) => tailDependency(signal), fallback: null };
      const tasks = { a: optional, b: optional, c: optional };
      fallbackRoute(app, tasks, 'calls');
      return;
    }
  }
});
