import { performance } from 'node:perf_hooks';
import type { NextFunction, Request, Response } from 'express';
import { resolveOptions } from './options';
import { Runtime } from './runtime';
import { Scope } from './scope';
import type { FanoutMiddleware, FanoutOptions } from './types';

/**
 * The middleware factory: `app.use(fanout({ budgetMs: 500 }))` gives every later handler `req.fanout`.
 * Options are validated here, once; a bad value throws a `TypeError` naming it.
 */
export function fanout(options?: FanoutOptions): FanoutMiddleware;
export function fanout(...args: unknown[]): FanoutMiddleware {
  const [options, , next] = args;
  if (args.length === 3 && looksLikeRequest(options) && typeof next === 'function') {
    // `app.use(fanout)` without the call: Express hands us (req, res, next) on every request.
    (next as NextFunction)(
      new TypeError(
        'express-fanout: `fanout` is a factory; write `app.use(fanout())`, not `app.use(fanout)`',
      ),
    );
    return undefined as unknown as FanoutMiddleware;
  }
  const runtime = new Runtime(resolveOptions(options as FanoutOptions | undefined));

  const middleware = function fanoutMiddleware(req: Request, res: Response, next: NextFunction): void {
    req.fanout = new Scope(runtime, req, res, performance.now());
    next();
  } as FanoutMiddleware;
  middleware.close = () => runtime.close();
  middleware.stats = () => runtime.stats();
  return middleware;
}

function looksLikeRequest(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    'method' in value &&
    'headers' in value &&
    'socket' in value
  );
}
