// CPU-bound steps on the worker-thread pool, under the request's budget; worker.js (next to this file) holds them.
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import express from 'express';
import { fanout } from 'express-fanout';

export const fo = fanout({ budgetMs: 500, workers: { script: join(__dirname, 'worker.js') } });
export const app = express();
app.use(fo);

app.get('/fib', async (req, res, next) => {
  try {
    const n = Number(req.query.n ?? 25);
    res.json({ n, value: await req.fanout.worker('fib', [n]) }); // one step, under the request's budget
  } catch (error) {
    next(error); // fib(45) misses the 500 ms budget: a 504, its thread terminated
  }
});

app.get('/', async (req, res, next) => {
  try {
    const bytes = new TextEncoder().encode('hello');
    const { file, digest } = await req.fanout.all({
      file: ({ signal }) => readFile('package.json', { signal, encoding: 'utf8' }),
      // a worker step inside a fan-out: ctx.worker; `transfer` moves the buffer to the thread instead of copying it
      digest: ({ worker }) => worker('sha256', [bytes.buffer], { transfer: [bytes.buffer] }),
    });
    res.json({ bytes: file.length, digest });
  } catch (error) {
    next(error); // Express 4 does not catch a rejected async handler: without this, a failed task ends the process
  }
});

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(`Listening on ${url}\nTry: curl -i ${url}/\n     curl -i '${url}/fib?n=45'`);
  });
}
