// Winning the tail back: a retried task, a hedged one, a shared one (single-flight), and an optional task that
// is skipped when its name's recent p95 cannot fit in the time left.
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { fanout } from 'express-fanout';

export const fo = fanout({ budgetMs: 300, retryBudget: { ratio: 0.2 }, hedgeBudget: { ratio: 0.1 } });
export const app = express();
app.use(fo);

// Stand-ins for three services with a tail: every fifth profile call fails, every tenth recommendations call
// takes 500 ms instead of 20, and the ads service takes 120 ms.
let profileCalls = 0;
const flakyProfile = async (id: string, signal: AbortSignal) => {
  await sleep(20, undefined, { signal });
  if (++profileCalls % 5 === 0) throw new Error('profile service hiccup');
  return { id, name: 'Ada' };
};
let recommendationCalls = 0;
const slowSometimes = (signal: AbortSignal) =>
  sleep(++recommendationCalls % 10 === 0 ? 500 : 20, ['a', 'b'], { signal });

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
      // A second attempt once the first is slower than this name's recent p95 (known after 20 calls); the first
      // to answer wins, the other is aborted.
      recommendations: { run: ({ signal }) => slowSometimes(signal), hedgeMs: 'p95', fallback: [] },
      // Every request asking for the flags at the same moment shares one call.
      flags: { run: ({ signal }) => sleep(30, { beta: true }, { signal }), key: 'flags' },
      // Optional: taken from its fallback at once when its p95 (120 ms) exceeds what is left, as for a caller
      // that sends a 100 ms budget (x-request-budget-ms: 100).
      ads: { run: ({ signal }) => sleep(120, ['ad'], { signal }), fallback: [] },
    });
    res.json(page);
  } catch (error) {
    next(error);
  }
});

// How often each mechanism fired: retries, hedges and hedgeWins, coalesced, skipped.
app.get('/stats', (_req, res) => {
  const { retries, hedges, hedgeWins, coalesced, skipped } = fo.stats();
  res.json({ retries, hedges, hedgeWins, coalesced, skipped });
});

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(
      `Listening on ${url}\nTry: curl -i ${url}/users/1\n` +
        `     for i in $(seq 40); do curl -s ${url}/users/1 >/dev/null & done; wait; curl ${url}/stats\n` +
        `     curl -si -H 'x-request-budget-ms: 100' ${url}/users/1 | grep -i server-timing`,
    );
  });
}
