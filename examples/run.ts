// run(): one task under the request's bounds and budget, awaited where the handler needs it. Steps that depend
// on each other run in sequence, each with the signal that aborts at the deadline.
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
