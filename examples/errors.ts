// Errors: every error of the package is a FanoutError with the HTTP `status`, `expose` and, for a 503,
// `headers` with Retry-After, so Express's default handler already answers correctly. An error handler of
// your own can tell them apart; the task's own error stays in `cause`, out of the response.
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

export const app = express();
app.use(fanout({ budgetMs: 200 }));

app.get('/down', gather({ db: () => Promise.reject(new Error('connection refused to 10.0.0.5')) })); // 502
app.get('/slow', gather({ db: ({ signal }) => sleep(1000, 'late', { signal }) })); // 504 at the 200 ms budget

const onFanoutError: ErrorRequestHandler = (error, req, res, next) => {
  if (!(error instanceof FanoutError)) return next(error);
  if (error instanceof TaskFailedError) console.error(req.path, error.message, error.cause); // 502: log the cause
  if (error instanceof BudgetExceededError) res.set('x-budget-ms', String(error.budgetMs)); // 504
  if (error instanceof OverloadedError) res.set('Retry-After', String(error.retryAfter)); // 503
  if (error instanceof ClientClosedError) return void res.end(); // 499: nobody reads the answer
  res.status(error.status).json({ error: error.expose ? error.message : 'unavailable', tasks: error.tasks });
};
app.use(onFanoutError);
