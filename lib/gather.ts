import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { describe, integer } from './options';
import { parseTasks } from './task-def';
import type { Results, Tasks } from './types';

export interface GatherOptions<T extends Tasks> {
  /** Status of the JSON answer. Integer from 200 to 299. @default 200 */
  status?: number;
  /** Shapes the merged values into the JSON body. @default the values as they are */
  map?: (values: Results<T>, req: Request) => unknown;
}

/**
 * A ready route handler: runs `req.fanout.all(tasks)` and answers with the merged JSON, or passes the
 * error to `next()` (Express 4 and 5 alike). `tasks` may be a function of the request.
 * ```ts
 * app.get('/', gather({ file, db, api }));
 * ```
 */
export function gather<T extends Tasks>(
  tasks: T | ((req: Request) => T),
  options: GatherOptions<T> = {},
): RequestHandler {
  if (typeof tasks !== 'function') parseTasks(tasks, 'tasks of `gather()`');
  const status = options.status === undefined ? 200 : integer('status', options.status, 200, 299);
  const map = options.map;
  if (map !== undefined && typeof map !== 'function') {
    throw new TypeError(`Expected \`map\` to be a function, got ${describe(map)}`);
  }
  return function gatherHandler(req: Request, res: Response, next: NextFunction): void {
    const fo = req.fanout;
    if (!fo) return next(new Error('express-fanout: `gather()` needs `app.use(fanout())` before this route'));
    let resolved: T;
    try {
      resolved = typeof tasks === 'function' ? tasks(req) : tasks;
    } catch (error) {
      return next(error);
    }
    fo.all(resolved).then((values) => {
      try {
        res.status(status).json(map ? map(values, req) : values);
      } catch (error) {
        next(error);
      }
    }, next);
  };
}
