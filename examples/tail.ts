// Winning the tail back: a retried task, a hedged one, a shared one (single-flight), and an optional task that
// is skipped when its name's recent p95 cannot fit in the time left.
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { fanout } from 'express-fanout';

export const app = express();
app.use(fanout({ budgetMs: 300, retryBudget: { ratio: 0.2 }, hedgeBudget: { ratio: 0.05 } }));

const flakyProfile = async (id: string, signal: AbortSignal) => {
  await sleep(20, undefined, { signal });
  if (Math.random() < 0.1) throw new Error('profile service hiccup');
  return { id, name: 'Ada' };
};

app.get('/users/:id', async (req, res, next) => {
  const id = req.params.id;
  try {
    const page = await req.fanout.all({
      // Up to 2 more attempts, 10 ms base backoff, each attempt cut at 100 ms; only while the budget holds one.
      profile: {
        run: ({ signal }) => flakyProfile(id, signal),
        retries: { max: 2, retryOn: (error: unknown) => !(error instanceof TypeError) },
        attemptTimeoutMs: 100,
      },
      // A second attempt if the first is slower than this name's recent p95; the first to answer wins.
      recommendations: {
        run: ({ signal, attempt }) => sleep(attempt === 0 ? 500 : 20, ['a', 'b'], { signal }),
        hedgeMs: 'p95',
        fallback: [],
      },
      // Every request asking for the flags at the same moment shares one call.
      flags: { run: ({ signal }) => sleep(30, { beta: true }, { signal }), key: 'flags' },
      // Optional and slow: taken from its fallback at once when its p95 exceeds what is left.
      ads: { run: ({ signal }) => sleep(250, ['ad'], { signal }), fallback: [] },
    });
    res.json(page);
  } catch (error) {
    next(error);
  }
});
