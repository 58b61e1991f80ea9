// What the pressure scenarios' servers sample for the runner: the middleware's whole `stats()` (flattened) and the
// count of 2xx answers, every 100 ms.
import type { Express } from 'express';
import type { FanoutMiddleware } from 'express-fanout';
import { track, trackRecord } from './app';
import { flattenStats } from './flatten-stats';

/** Samples the middleware's whole `stats()` every 100 ms as series `stats.<path>`. */
export function trackStats(fo: FanoutMiddleware, prefix = 'stats.'): void {
  trackRecord(prefix, () => flattenStats(fo.stats()));
}

/**
 * Counts the 2xx answers as the series `ok` (cumulative, sampled every 100 ms), so the runner can take the rate of
 * answers over the offered window only: with seconds of backlog, the load's own span (first request to last
 * response) includes the drain after the offered load stopped and would understate the rate.
 */
export function trackAnswers(app: Express): void {
  let ok = 0;
  track('ok', () => ok);
  app.use((_req, res, next) => {
    res.once('finish', () => {
      if (res.statusCode >= 200 && res.statusCode < 300) ok++;
    });
    next();
  });
}
