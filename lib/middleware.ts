import { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { NextFunction, Request, Response } from 'express';
import { requestBudget } from './budget-header';
import { Door } from './door';
import { acquireLoopMonitor } from './loop-monitor';
import { resolveOptions } from './options';
import { Runtime } from './runtime';
import { hearResponseEnds, Scope, watchedScope } from './scope';
import type { FanoutMiddleware, FanoutOptions } from './types';
import { reportWork } from './work-time-header';

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
  const resolved = resolveOptions(options as FanoutOptions | undefined);
  const runtime = new Runtime(resolved);
  const loop = resolved.eventLoop ? acquireLoopMonitor() : null;
  const door = loop && resolved.eventLoop ? new Door(resolved.eventLoop, loop, performance.now()) : null;
  const header = resolved.budgetHeader;
  const budgetOf = (asked: string | string[] | undefined): number => requestBudget(asked, resolved);
  explainMissingFanout();
  // Responses' ends, from Node's HTTP server: once for the process, not a listener a request (scope.ts).
  hearResponseEnds();

  const middleware = function fanoutMiddleware(req: Request, res: Response, next: NextFunction): void {
    // A request of http's has the accessor (its scope lives in `slotOf(req)`); another (a test's plain object)
    // keeps `req.fanout` as its own property.
    const http = req instanceof IncomingMessage;
    // `res.locals` as `slotOf(req)` finds it through `req.res`: one read of a response less.
    const slot = http ? slotIn(req, res) : undefined;
    // Own checks only: a missing symbol read would walk the whole prototype chain (Express, http, stream).
    const outer = slot
      ? Object.hasOwn(slot, SCOPE)
        ? slot[SCOPE]
        : undefined
      : Object.hasOwn(req, 'fanout')
        ? req.fanout
        : undefined;
    // The request's headers are read once: each read of `req` costs (Express gives every request a map of its own).
    const asked = header ? req.headers[header] : undefined;
    let scope: Scope;
    if (outer instanceof Scope) {
      // The same instance mounted twice (app and router): the request keeps its scope, and so its budget.
      if (outer.runtime === runtime) return next();
      // Another instance below the first: its own bounds, but its clock starts at the request's first
      // sighting, and its deadline never falls after the outer one's. The outer one's door counted it.
      scope = new Scope(runtime, req, res, outer.arrival, outer, asked);
      scope.watch(null);
    } else {
      const arrival = performance.now();
      // The process's door, before anything per-request is built (door.ts).
      const shed = door?.enter(arrival, asked, budgetOf);
      if (shed) return next(shed);
      scope = new Scope(runtime, req, res, arrival, undefined, asked);
      scope.watch(door);
      if (asked !== undefined) reportWork(res, arrival);
    }
    if (slot) slot[SCOPE] = scope;
    else req.fanout = scope;
    next();
  } as FanoutMiddleware;
  let lease = loop;
  middleware.close = () => {
    lease?.release();
    lease = null;
    return runtime.close();
  };
  middleware.stats = () => ({
    ...runtime.stats(),
    eventLoop: door
      ? door.stats(performance.now())
      : { delayMs: 0, utilization: 0, shedding: false, shed: 0, inFlight: 0 },
  });
  middleware.observe = (observer) => runtime.observe(observer);
  return middleware;
}

/** The key `req.fanout` keeps the request's scope under (`Symbol.for`: two copies of the package agree on it). */
const SCOPE = Symbol.for('express-fanout.scope');
type Carrier = { [SCOPE]?: unknown };

/**
 * Where a request's scope lives: Express's `res.locals` (made for each request, a null-prototype object in
 * dictionary mode, where adding a key is a hash insert), else the request itself. Not the request when it can
 * be helped: Express switches every request's prototype (`Object.setPrototypeOf(req, app.request)`), which leaves
 * each request with a hidden class of its own in V8, so a property added to it copies that class: ~2 µs a
 * request, the package's most expensive line (a WeakMap costs less to write but more to collect).
 */
function slotOf(req: object): Carrier {
  return slotIn(req, (req as { res?: object }).res);
}

/** {@link slotOf} with the response at hand. */
function slotIn(req: object, res: object | undefined): Carrier {
  const locals = (res as { locals?: unknown } | undefined)?.locals;
  return typeof locals === 'object' && locals !== null ? (locals as Carrier) : (req as Carrier);
}

/**
 * `req.fanout` on a request that no `fanout()` middleware saw is a clear error instead of `Cannot read
 * properties of undefined`: an accessor on `http.IncomingMessage.prototype` (which Express's requests inherit
 * from) that throws saying what to mount. It reads and its setter writes the symbol-keyed slot of `slotOf`.
 * Installed once, by the first `fanout()` call, never by importing the package.
 */
function explainMissingFanout(): void {
  const proto = IncomingMessage.prototype as unknown as Record<string, unknown>;
  if (Object.getOwnPropertyDescriptor(proto, 'fanout')) return;
  Object.defineProperty(proto, 'fanout', {
    configurable: true,
    enumerable: false,
    get(this: object): unknown {
      const slot = slotOf(this);
      const scope = slot[SCOPE];
      if (scope !== undefined) return scope;
      // A middleware after fanout() replaced `res.locals` (rather than adding to it): found again on the socket.
      const watched = watchedScope(this as IncomingMessage);
      if (watched !== undefined) return (slot[SCOPE] = watched);
      throw new TypeError(
        'express-fanout: `req.fanout` is not set on this request: mount `app.use(fanout())` (or ' +
          '`router.use(fanout())`) before the routes that use it, and after body parsers (and add to ' +
          '`res.locals` rather than replace it)',
      );
    },
    set(this: object, value: unknown) {
      slotOf(this)[SCOPE] = value;
    },
  });
}

/** A request's budget as its scope will find it (scope.ts): the default, or the budget header's, capped. */
function looksLikeRequest(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    'method' in value &&
    'headers' in value &&
    'socket' in value
  );
}
