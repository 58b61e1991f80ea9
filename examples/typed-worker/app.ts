// app.ts
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import express, { type Request } from 'express';
import { fanout, gather } from 'express-fanout';
import type { WordCount } from './worker-methods';

// Compiled, the script is worker.js next to the app. Run from sources (`npx tsx app.ts`) it is worker.ts, which
// the threads load through tsx's require hook: threads do not inherit the parent's loaders.
const fromSources = __filename.endsWith('.ts');
export const fo = fanout({
  workers: fromSources
    ? { script: join(__dirname, 'worker.ts'), execArgv: ['--require', require.resolve('tsx/cjs')] }
    : { script: join(__dirname, 'worker.js') },
});
export const app = express();
app.use(fo);

app.get('/count', gather({ count: ({ worker }) => worker('wordCount', ['to be or not to be']) })); // WordCount
app.get('/fib', async (req, res, next) => {
  try {
    const value: number = await req.fanout.worker('fib', [30]);
    res.json({ value });
  } catch (error) {
    next(error);
  }
});

// The method name, its arguments and its result are checked; neither of these compiles:
// @ts-expect-error `fib` takes a number
export const wrongArgs = (req: Request) => req.fanout.worker('fib', ['30']);
// @ts-expect-error there is no method `fob`
export const wrongName = (req: Request): Promise<WordCount> => req.fanout.worker('fob', [30]);

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(`Listening on ${url}\nTry: curl -i ${url}/count\n     curl -i ${url}/fib`);
  });
}
