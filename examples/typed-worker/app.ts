// app.ts
import { join } from 'node:path';
import express, { type Request } from 'express';
import { fanout, gather } from 'express-fanout';
import type { WordCount } from './worker-methods';

const fo = fanout({ workers: { script: join(__dirname, 'worker.js') } }); // the compiled script, next to the app
export const app = express();
app.use(fo);

app.get('/count', gather({ count: ({ worker }) => worker('wordCount', ['to be or not to be']) })); // WordCount
app.get('/fib', async (req, res) => {
  const value: number = await req.fanout.worker('fib', [30]);
  res.json({ value });
});

// The method name, its arguments and its result are checked; neither of these compiles:
// @ts-expect-error `fib` takes a number
export const wrongArgs = (req: Request) => req.fanout.worker('fib', ['30']);
// @ts-expect-error there is no method `fob`
export const wrongName = (req: Request): Promise<WordCount> => req.fanout.worker('fob', [30]);
