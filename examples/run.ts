// run(): one task under the request's bounds and budget, awaited where the handler needs it. Steps that depend
// on each other run in sequence, each with the signal that aborts at the deadline.
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { fanout } from 'express-fanout';

const users = new Map([['1', { id: '1', name: 'Ada', team: 'engines' }]]);

export const app = express();
app.use(fanout({ budgetMs: 400 }));

app.get('/users/:id/team', async (req, res, next) => {
  try {
    const user = await req.fanout.run(
      ({ signal }) => sleep(30, users.get(req.params.id), { signal }),
      'user',
    );
    if (user === undefined) return void res.status(404).json({ error: 'no such user' });
    const members = await req.fanout.run(
      { run: ({ signal }) => sleep(30, [user.name, 'Grace'], { signal }), timeoutMs: 100, fallback: [] },
      'members',
    );
    res.json({ team: user.team, members, leftMs: req.fanout.remainingMs() });
  } catch (error) {
    next(error);
  }
});

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(`Listening on ${url}\nTry: curl -i ${url}/users/1/team\n     curl -i ${url}/users/2/team`);
  });
}
