// The app under test, built by a function: each test file (or test) gets its own middleware and closes it, the
// dependencies are passed in (fakes in tests, real clients in production), and the same routes can be tested on
// Express 4 and 5.
import express from 'express';
import { budget, fanout, type FanoutOptions, gather } from 'express-fanout';

export interface Dependencies {
  profile(id: string, signal: AbortSignal): Promise<{ id: string; name: string }>;
  recommendations(id: string, signal: AbortSignal): Promise<string[]>;
  report(signal: AbortSignal): Promise<{ rows: number }>;
}

export function createApp(deps: Dependencies, options: FanoutOptions = {}, createExpress = express) {
  const fo = fanout({ budgetMs: 500, ...options });
  const app = createExpress();
  app.use(fo);
  app.get(
    '/users/:id',
    gather((req) => ({
      profile: ({ signal }) => deps.profile(String(req.params.id), signal),
      recommendations: {
        run: ({ signal }) => deps.recommendations(String(req.params.id), signal),
        fallback: [],
      },
    })),
  );
  // One slow route with a budget of its own, longer than the app's 500 ms.
  app.get('/report', budget(2000), gather({ report: ({ signal }) => deps.report(signal) }));
  return { app, fo };
}
