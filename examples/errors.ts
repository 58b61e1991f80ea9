// Errors: every error of the package is a FanoutError with the HTTP `status`, `expose` and, for a 503,
// `headers` with Retry-After, so Express's default handler already answers correctly. An error handler of
// your own can answer every error the same way, from `status` and `expose` (the http-errors convention: a 4xx
// is the client's to read, a 5xx is not), and tell the package's errors apart for logs and headers; the task's
// own error stays in `cause`, out of the response.
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import express, { type ErrorRequestHandler } from 'express';
import {
  BudgetExceededError,
  ClientClosedError,
  fanout,
  FanoutError,
  gather,
  OverloadedError,
  TaskFailedError,
} from 'express-fanout';

/** A client error of your own, shaped like the package's: its message is meant for the client. */
class BadRequestError extends Error {
  readonly status = 400;
  readonly expose = true;
}

export const app = express();
app.use(fanout({ budgetMs: 200 }));

app.get('/down', gather({ db: () => Promise.reject(new Error('connection refused to 10.0.0.5')) })); // 502
app.get('/slow', gather({ db: ({ signal }) => sleep(1000, 'late', { signal }) })); // 504 at the 200 ms budget
app.get('/users/:id', async (req, res, next) => {
  try {
    const { id } = req.params;
    if (!/^\d+$/.test(id)) throw new BadRequestError(`id must be digits, got "${id.slice(0, 20)}"`); // 400
    res.json(await req.fanout.all({ user: ({ signal }) => sleep(20, { id, name: 'Ada' }, { signal }) }));
  } catch (error) {
    next(error);
  }
});

const onError: ErrorRequestHandler = (error, req, res, next) => {
  if (res.headersSent) return next(error);
  if (error instanceof ClientClosedError) return void res.end(); // 499: nobody reads the answer
  if (error instanceof TaskFailedError) console.error(req.path, error.message, error.cause); // 502: log the cause
  if (error instanceof BudgetExceededError) res.set('x-budget-ms', String(error.budgetMs)); // 504
  if (error instanceof OverloadedError) res.set('Retry-After', String(error.retryAfter)); // 503
  const status = Number.isInteger(error?.status) ? (error.status as number) : 500;
  res.status(status).json({
    error: error?.expose === true ? error.message : 'unavailable', // every 5xx of the package has expose: false
    tasks: error instanceof FanoutError ? error.tasks : undefined,
  });
};
app.use(onError);

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(`Listening on ${url}\nTry: curl -i ${url}/users/x1\n     curl -i ${url}/down`);
  });
}
