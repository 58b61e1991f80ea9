// Route handlers shared by the scenarios that fan out through the package and count what they served.
import type { Express } from 'express';
import type { Tasks } from 'express-fanout';
import { count } from './app';

/**
 * `GET /`: all() of optional tasks whose fallback is `null`, counting requests, `perTask` per task (`calls`
 * where the dependency does not count itself, `tasks` where it does) and the fallbacks served.
 */
export function fallbackRoute(app: Express, tasks: Tasks, perTask: 'calls' | 'tasks'): void {
  const size = Object.keys(tasks).length;
  app.get('/', async (req, res) => {
    const values: Record<string, unknown> = await req.fanout.all(tasks);
    let fallbacks = 0;
    for (const value of Object.values(values)) if (value === null) fallbacks++;
    count('requests');
    count(perTask, size);
    count('fallbacks', fallbacks);
    if (fallbacks > 0) count('requestsWithFallback');
    res.json(values);
  });
}

/** `GET /`: all() of required tasks, counting requests; a failure goes to Express's error handler. */
export function allRoute(app: Express, tasks: Tasks): void {
  app.get('/', async (req, res, next) => {
    count('requests');
    try {
      res.json(await req.fanout.all(tasks));
    } catch (error) {
      next(error);
    }
  });
}
