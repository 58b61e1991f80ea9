import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ClientClosedError, isInstance } from './errors';
import { describe, integer, rejectUnknown } from './validate';
import { parseTasks } from './task-def';
import type { CheckedTasks, Results, Tasks } from './types';

export interface GatherOptions<T extends Tasks> {
  /** Status of the JSON answer. Integer from 200 to 299. @default 200 */
  status?: number;
  /** Shapes the merged values into the JSON body. @default the values as they are */
  map?: (values: Results<T>, req: Request) => unknown;
}

const GATHER_OPTIONS: readonly (keyof GatherOptions<Tasks>)[] = ['status', 'map'];

/**
 * The tasks whose values `map` receives. Given as a function of the request, the tasks reach `T` only as
 * `Tasks` (TypeScript infers nothing through `CheckedTasks` from a function's result), and `map` would see
 * every value as `unknown`; the graph `G`, read from the same object literal, has their types.
 */
type MapTasks<T extends Tasks, G> = Tasks extends T ? (G extends Tasks ? G : T) : T;

/**
 * A ready route handler: runs `req.fanout.all(tasks)` and answers with the merged JSON, or passes the
 * error to `next()` (Express 4 and 5 alike). `tasks` may be a function of the request.
 * ```ts
 * app.get('/', gather({ file, db, api }));
 * ```
 */
export function gather<T extends Tasks, G = T>(
  tasks: CheckedTasks<T, G> | ((req: Request) => CheckedTasks<T, G>),
  options: GatherOptions<MapTasks<T, G>> = {},
): RequestHandler {
  if (typeof tasks !== 'function') parseTasks(tasks, 'tasks of `gather()`');
  // Checked here, at route definition, as `fanout()` checks its own: a typo such as `stauts` is a TypeError
  // with a "did you mean" instead of an option silently ignored on every request.
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`Expected the options of \`gather()\` to be an object, got ${describe(options)}`);
  }
  rejectUnknown(options, GATHER_OPTIONS);
  const status = options.status === undefined ? 200 : integer('status', options.status, 200, 299);
  const map = options.map as GatherOptions<T>['map'];
  if (map !== undefined && typeof map !== 'function') {
    throw new TypeError(`Expected \`map\` to be a function, got ${describe(map)}`);
  }
  return function gatherHandler(req: Request, res: Response, next: NextFunction): void {
    let fo: Request['fanout'] | undefined;
    let resolved: T;
    try {
      // Throws saying what to mount when no `fanout()` saw this request (see middleware.ts).
      fo = req.fanout;
      if (!fo)
        throw new TypeError(`express-fanout: \`gather()\` needs \`app.use(fanout())\` before this route`);
      resolved = (typeof tasks === 'function' ? tasks(req) : tasks) as T;
    } catch (error) {
      return next(error);
    }
    fo.all(resolved).then(
      (values) => {
        try {
          res.status(status).json(map ? map(values, req) : values);
        } catch (error) {
          next(error);
        }
      },
      (error: unknown) => {
        // The client has gone: nobody reads an answer, so none is written (Express would write a 499 body).
        if (isInstance(error, ClientClosedError)) return;
        next(error);
      },
    );
  };
}
