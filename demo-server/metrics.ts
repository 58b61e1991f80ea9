// `GET /metrics`: the middleware's Prometheus metrics (express-fanout/prometheus), on a registry of the
// demo's own: two demos in one process, as in the tests, never clash over prom-client's default registry.
import type { RequestHandler } from 'express';
import { Registry } from 'prom-client';
import type { FanoutMiddleware } from 'express-fanout';
import { prometheus } from 'express-fanout/prometheus';

export interface Metrics {
  handler: RequestHandler;
  /** Stops observing the middleware and unregisters the metrics. */
  close(): void;
}

export function metricsOf(fo: FanoutMiddleware): Metrics {
  const registry = new Registry();
  const metrics = prometheus(fo, { registry });
  const handler: RequestHandler = (_req, res, next) => {
    registry
      .metrics()
      .then((text) => {
        res.type(registry.contentType).send(text);
      })
      .catch(next);
  };
  return {
    handler,
    close: () => {
      metrics.remove();
      registry.clear();
    },
  };
}
