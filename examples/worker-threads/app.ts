// CPU-bound steps on the worker-thread pool, under the request's budget; worker.js (next to this file) holds them.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import express from 'express';
import { fanout } from 'express-fanout';

export const fo = fanout({ budgetMs: 500, workers: { script: join(__dirname, 'worker.js') } });
export const app = express();
app.use(fo);

app.get('/fib', async (req, res, next) => {
  try {
    res.json({ value: await req.fanout.worker('fib', [25]) }); // one step, under the request's budget
  } catch (error) {
    next(error);
  }
});

app.get('/', async (req, res) => {
  const bytes = new TextEncoder().encode('hello');
  const { file, digest } = await req.fanout.all({
    file: ({ signal }) => readFile('package.json', { signal, encoding: 'utf8' }),
    // a worker step inside a fan-out: ctx.worker; `transfer` moves the buffer to the thread instead of copying it
    digest: ({ worker }) => worker('sha256', [bytes.buffer], { transfer: [bytes.buffer] }),
  });
  res.json({ bytes: file.length, digest });
});
