// Scenario 7, winning the tail back: hedging a heavy tail, retrying a flaky dependency, a retry storm against a
// dependency that fails every call, and single-flight of 200 equal requests. Every variant counts its own
// downstream calls, so the extra work hedges and retries cost is measured, not assumed.
import { setTimeout as sleep } from 'node:timers/promises';
import type { TaskContext } from 'express-fanout';
import { count, serve, variantArg } from './app';
import { tailDependency } from './deps';
import { loadPackage } from './package';
import { TAIL_VARIANTS, tailWins } from './params';
import { allRoute, fallbackRoute } from './routes';
import { seededRandom } from './seeded-random';

const variant = variantArg(TAIL_VARIANTS);

// Seeded, so both flaky variants meet the same sequence of failures.
const random = seededRandom(0xf1a4);

/** The heavy-tail dependency, counted. */
function tail(signal: AbortSignal): Promise<number> {
  count('calls');
  return tailDependency(signal);
}

/** 20 ms; `failShare` of the calls reject after it. */
async function flaky(signal: AbortSignal, failShare: number): Promise<number> {
  count('calls');
  const fails = random() < failShare;
  await sleep(tailWins.flakyMs, undefined, { signal });
  if (fails) throw new Error('dependency failed');
  return 1;
}

/** A 100 ms dependency, counted per execution. */
function slowOnce(signal: AbortSignal): Promise<number> {
  count('calls');
  return sleep(tailWins.singleFlightMs, 1, { signal });
}

serve(async (app) => {
  const { fanout } = await loadPackage();
  switch (variant) {
    case 'hedge-fallback':
    case 'hedge-p95':
    case 'hedge-p95-tuned': {
      const tuned = variant === 'hedge-p95-tuned';
      app.use(fanout({ ...tailWins.options, ...(tuned ? tailWins.tunedOptions : {}) }));
      const optional = {
        run: ({ signal }: TaskContext) => tail(signal),
        fallback: null,
        ...(variant === 'hedge-p95' ? tailWins.hedgeTask : tuned ? tailWins.tunedTask : {}),
      };
      const tasks = { a: optional, b: optional, c: optional };
      fallbackRoute(app, tasks, 'tasks');
      break;
    }
    case 'flaky-none':
    case 'flaky-retries': {
      app.use(fanout(tailWins.options));
      const task = {
        run: ({ signal }: TaskContext) => flaky(signal, tailWins.flakyShare),
        ...(variant === 'flaky-retries' ? { retries: 2 } : {}),
      };
      const tasks = { a: task, b: task, c: task };
      allRoute(app, tasks);
      break;
    }
    case 'storm-naive':
    case 'storm-budget': {
      // Naive: the same retries with a budget too large to ever bind.
      const budget = variant === 'storm-naive' ? { retryBudget: { ratio: 1000, minPerSecond: 1e6 } } : {};
      app.use(fanout({ ...tailWins.options, ...budget }));
      const task = { down: { run: ({ signal }: TaskContext) => flaky(signal, 1), retries: 3 } };
      allRoute(app, task);
      break;
    }
    case 'sf-none':
    case 'sf-key': {
      app.use(fanout({ ...tailWins.options, budgetMs: 1000 }));
      const task = {
        user: {
          run: ({ signal }: TaskContext) => slowOnce(signal),
          ...(variant === 'sf-key' ? { key: 'user:42' } : {}),
        },
      };
      allRoute(app, task);
      break;
    }
  }
});
