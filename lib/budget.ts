import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { FanoutError } from './errors';
import { describe, MAX_TIMER_MS } from './validate';
import { Scope } from './scope';

/**
 * A route middleware that gives this route its own budget, longer or shorter than the middleware's `budgetMs`:
 * ```ts
 * app.use(fanout({ budgetMs: 500 }));
 * app.get('/report', budget(5000), reportHandler); // 5 s for this route only
 * ```
 * The budget counts from when `fanout()` saw the request, like `budgetMs`. Rules:
 * - A client's budget header still wins when it is shorter (a caller with 300 ms left gets 300 ms); a longer
 *   header never lengthens the route's budget. `maxBudgetMs` bounds only what a client may ask for over the
 *   middleware's `budgetMs`: a route's own budget is the server's choice and is not bounded by it.
 * - It must run before the request's first task: put it before the handlers that use `req.fanout`. Once a task
 *   has started (or the request is over) it passes a 500 `FanoutError` to `next()` that says so.
 * - With two `fanout()` instances on the request (app and router), it sets the budget of both.
 *
 * This is the way to lengthen one route's budget: `all(tasks, { budgetMs })` and a second `fanout({ budgetMs })`
 * on a router only ever tighten the request's budget.
 * @param ms the route's budget in ms, an integer from 1 to 2147483647; anything else is a `TypeError` here, at
 * route definition.
 */
export function budget(ms: number): RequestHandler {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 1 || ms > MAX_TIMER_MS) {
    throw new TypeError(
      `Expected the \`ms\` of \`budget(ms)\` to be an integer from 1 to ${MAX_TIMER_MS}, got ${describe(ms)}`,
    );
  }
  const budgetMs = ms;
  return function fanoutBudget(req: Request, _res: Response, next: NextFunction): void {
    let scope: unknown;
    try {
      // Throws saying what to mount when no `fanout()` saw this request (see middleware.ts).
      scope = req.fanout;
    } catch (error) {
      return next(error);
    }
    if (!(scope instanceof Scope)) {
      return next(
        new TypeError(
          `express-fanout: \`budget(${budgetMs})\` needs \`app.use(fanout())\` before this route`,
        ),
      );
    }
    const late = scope.setBudget(budgetMs);
    if (late === undefined) return next();
    next(
      new FanoutError(
        `\`budget(${budgetMs})\` came too late for this request: ${late}. Put it before the handlers that use ` +
          `\`req.fanout\`, as in \`app.get('/report', budget(${budgetMs}), handler)\``,
        500,
      ),
    );
  };
}
