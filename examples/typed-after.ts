// Typed dependencies: `after` compiles only with the names of sibling tasks, and `ctx.results` holds exactly
// the values of the tasks it names, typed from the object literal itself.
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { fanout, type TaskContext } from 'express-fanout';

interface User {
  id: string;
  name: string;
}
const users = new Map<string, User>([['1', { id: '1', name: 'Ada' }]]);
const flagCache = { get: async (): Promise<string[]> => ['beta'] };

export const app = express();
app.use(fanout({ budgetMs: 300 }));

app.get('/users/:id/home', async (req, res, next) => {
  try {
    const { greeting, team } = await req.fanout.all({
      // Takes `ctx` for its signal: annotating the parameter lets its dependents know its type.
      user: ({ signal }: TaskContext) => sleep(30, users.get(req.params.id), { signal }),
      // Takes nothing: typed as it is, fallback included.
      flags: { run: () => flagCache.get(), fallback: null },
      // ctx.results: { user: User | undefined }
      team: {
        after: ['user'],
        run: ({ results, signal }) => sleep(20, results.user ? [results.user.name, 'Grace'] : [], { signal }),
      },
      // ctx.results: { user: User | undefined; flags: string[] | null }
      greeting: {
        after: ['user', 'flags'],
        run: ({ results }) => `Hello ${results.user?.name ?? 'stranger'} (${results.flags?.join(', ')})`,
      },
    });
    res.json({ greeting, team });
  } catch (error) {
    next(error);
  }
});

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(`Listening on ${url}\nTry: curl -i ${url}/users/1/home`);
  });
}
