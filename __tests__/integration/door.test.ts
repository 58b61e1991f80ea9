import { execFile } from 'node:child_process';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import type { Express, RequestHandler } from 'express';
import { fanout, type FanoutMiddleware, type FanoutOptions } from 'express-fanout';
import * as loopMonitor from '../../lib/loop-monitor';
import { ManualLoopMonitor, type LoopMonitorLease } from '../../lib/loop-monitor';
import { deferred, sleep, waitFor, type Deferred } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { report, useHarness } from './helpers/harness';

/** A loop monitor the test sets by hand, handed to the middleware in place of the process's one. */
function forcedMonitor(): ManualLoopMonitor & LoopMonitorLease & { releases: number } {
  const monitor = Object.assign(new ManualLoopMonitor(), {
    releases: 0,
    release(): void {
      monitor.releases++;
    },
  });
  jest.spyOn(loopMonitor, 'acquireLoopMonitor').mockReturnValue(monitor);
  return monitor;
}

const spin = (ms: number): void => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};

/**
 * Requests pile up behind a loop that is the queue: `n` requests to `/hold` wait until `release()`; then the loop
 * is 1500 ms behind and fully busy, and a second wave of `n` arrives (so that, however long the first took on a
 * loaded machine, more arrived in the last second than completed). A new request is
 * then expected to wait about the loop's delay, over the 1000 ms budgets below. Resolves once the second wave
 * was judged; `release()` answers the held requests.
 */
async function pileUp(
  client: ReturnType<typeof import('supertest')>,
  fo: FanoutMiddleware,
  monitor: ManualLoopMonitor,
  n = 12,
): Promise<{ release(): Promise<void> }> {
  const held = deferred();
  holds.set(fo, held);
  const first = Array.from({ length: n }, () => client.get('/hold').then((res) => res.status));
  await waitFor(() => fo.stats().eventLoop.inFlight === n, `${n} requests in flight`);
  monitor.recentDelay = 1500;
  monitor.util = 1;
  const judged = () => fo.stats().eventLoop.inFlight + fo.stats().eventLoop.shed;
  const before = judged();
  const second = Array.from({ length: n }, () => client.get('/hold').then((res) => res.status));
  await waitFor(() => judged() === before + n, 'the second wave at the door');
  return {
    async release() {
      held.resolve();
      expect(await Promise.all(first)).toEqual(Array.from({ length: n }, () => 200));
      for (const status of await Promise.all(second)) expect([200, 503]).toContain(status);
    },
  };
}

const holds = new Map<FanoutMiddleware, Deferred<void>>();
const hold =
  (fo: () => FanoutMiddleware): RequestHandler =>
  (_req, res) => {
    void holds.get(fo())!.promise.then(() => res.send('held'));
  };

describe.each(expressVersions)("the process's door (%s)", (_version, express) => {
  const { serve } = useHarness(express);
  afterEach(() => jest.restoreAllMocks());

  async function serveDoor(options: FanoutOptions, routes: (app: Express) => void = () => undefined) {
    let self!: FanoutMiddleware;
    const served = await serve(options, (app, fo) => {
      self = fo;
      app.get(
        '/hold',
        hold(() => self),
      );
      routes(app);
    });
    return served;
  }

  it('sheds a request with 503 and Retry-After before its handler runs while requests pile up behind the loop', async () => {
    const monitor = forcedMonitor();
    let handled = 0;
    const { http: client, fo } = await serveDoor({ budgetMs: 1000 }, (app) =>
      app.get('/', (_req, res) => {
        handled++;
        res.send('ok');
      }),
    );
    await client.get('/').expect(200, 'ok');
    const pile = await pileUp(client, fo, monitor);
    const shed = fo.stats().eventLoop.shed;
    const res = await client.get('/').expect(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(handled).toBe(1);
    expect(fo.stats()).toMatchObject({
      shed: 0, // tasks shed from the queues: none
      eventLoop: { delayMs: 1500, utilization: 1, shed: shed + 1 },
    });
    await pile.release();
  });

  it('passes the OverloadedError to Express, its message naming the loop delay and the budget', async () => {
    const monitor = forcedMonitor();
    const {
      http: client,
      fo,
      errors,
    } = await serveDoor({ budgetMs: 1000 }, (app) => app.get('/', (_req, res) => res.send('ok')));
    const pile = await pileUp(client, fo, monitor);
    const before = errors.length;
    await client.get('/').expect(503);
    expect(errors).toHaveLength(before + 1);
    const error = errors[before] as Error;
    expect(error).toMatchObject({ name: 'OverloadedError', status: 503, tasks: [] });
    expect(error.message).toMatch(
      /^The request shed: the event loop is 1500 ms behind and the \d+ requests in flight would keep this one ~\d+ ms, over its 1000 ms budget$/,
    );
    await pile.release();
  });

  it("judges a request by its own budget: the budget header's shorter budget is shed, the default admitted", async () => {
    const monitor = forcedMonitor();
    const { http: client, fo } = await serveDoor({ budgetMs: 5000, maxBudgetMs: 5000 }, (app) =>
      app.get(
        '/',
        report(async (req) => req.fanout.remainingMs() > 0),
      ),
    );
    const pile = await pileUp(client, fo, monitor);
    const shed = fo.stats().eventLoop.shed;
    await client.get('/').set('x-request-budget-ms', '1000').expect(503);
    await client.get('/').expect(200); // ~1500 ms expected, x 1.25, fits in 5000
    expect(fo.stats().eventLoop.shed).toBe(shed + 1);
    await pile.release();
  });

  it('counts every admitted request out once its response ends: answered, failed, or its client gone', async () => {
    forcedMonitor();
    const {
      http: client,
      url,
      fo,
    } = await serveDoor({ budgetMs: 1000 }, (app) => {
      app.get('/', (_req, res) => res.send('ok'));
      app.get('/fail', () => {
        throw new Error('boom');
      });
      app.get('/hang', () => undefined);
    });
    await Promise.all([client.get('/'), client.get('/'), client.get('/fail').expect(500)]);
    // A client that leaves before any answer.
    const gone = http.get(`${url}/hang`, { agent: false });
    gone.on('error', () => undefined);
    await waitFor(() => fo.stats().eventLoop.inFlight === 1, 'the hanging request in flight');
    gone.destroy();
    await waitFor(() => fo.stats().eventLoop.inFlight === 0, 'nothing in flight');
    await sleep(50);
    expect(fo.stats().eventLoop.inFlight).toBe(0);
  });

  it('counts a pipelined request whose client leaves before its turn out once (its response never closes)', async () => {
    forcedMonitor();
    const { server, fo } = await serveDoor({ budgetMs: 1000 }, (app) => {
      app.get('/hang', () => undefined);
    });
    const { port } = server.address() as AddressInfo;
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('GET /hang HTTP/1.1\r\nHost: x\r\n\r\nGET /hang HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => fo.stats().eventLoop.inFlight === 2, 'both pipelined requests in flight');
    socket.destroy();
    await waitFor(() => fo.stats().eventLoop.inFlight === 0, 'nothing in flight');
    await sleep(50);
    expect(fo.stats().eventLoop.inFlight).toBe(0);
  });

  it('does not count a request whose client left while an async middleware before the door ran (no leak)', async () => {
    forcedMonitor();
    const gone = deferred();
    const { url, fo } = await serve(
      { budgetMs: 1000 },
      (app) => app.get('/', (_req, res) => res.send('ok')),
      {
        before: (app) =>
          app.use((_req, _res, next) => {
            void gone.promise.then(() => next());
          }),
      },
    );
    const client = http.get(`${url}/`, { agent: false });
    client.on('error', () => undefined);
    await sleep(50);
    client.destroy();
    await sleep(50);
    gone.resolve();
    await sleep(50);
    expect(fo.stats().eventLoop.inFlight).toBe(0);
  });

  it('is off with eventLoop: false: no monitor taken, nothing shed, zeros in stats()', async () => {
    const monitor = forcedMonitor();
    // A fixed concurrency: the adaptive limit takes a monitor of its own.
    const { http: client, fo } = await serve({ eventLoop: false, concurrency: 8 }, (app) =>
      app.get('/', (_req, res) => res.send('ok')),
    );
    monitor.recentDelay = 1500;
    monitor.util = 1;
    await client.get('/').expect(200);
    expect(loopMonitor.acquireLoopMonitor).not.toHaveBeenCalled();
    expect(fo.stats().eventLoop).toEqual({
      delayMs: 0,
      utilization: 0,
      shedding: false,
      shed: 0,
      inFlight: 0,
    });
  });

  it('releases its monitor once when the middleware closes', async () => {
    const monitor = forcedMonitor();
    const { fo } = await serve({ concurrency: 8 }, (app) => app.get('/', (_req, res) => res.send('ok')));
    await fo.close();
    await fo.close();
    expect(monitor.releases).toBe(1);
  });

  it('does not judge a request again in a second mount of the same instance, nor in a nested one', async () => {
    const monitor = forcedMonitor();
    const { http: client, app, fo } = await serveDoor({ budgetMs: 1000 });
    const inner = fanout({ budgetMs: 1000 });
    const router = express.Router();
    router.use(fo, inner);
    router.get('/', (_req, res) => res.send('ok'));
    app.use(router);
    await client.get('/').expect(200);
    expect(inner.stats().eventLoop.inFlight).toBe(0);
    const pile = await pileUp(client, fo, monitor);
    const shed = fo.stats().eventLoop.shed;
    // The outer mount sheds; had it admitted, neither the second mount nor the inner instance would judge.
    await client.get('/').expect(503);
    expect(fo.stats().eventLoop.shed).toBe(shed + 1);
    expect(inner.stats().eventLoop.shed).toBe(0);
    await pile.release();
    await inner.close();
  });
});

// The real monitor, the real loop: each request waits 5 ms off the loop, then busy-waits 8 ms on it (about 125
// a second fit); a client in another process sends 300 a second for 1.5 s, whatever the answers.
describe.each(expressVersions)('the door on a really overloaded loop (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('sheds part of an open-loop overload of the loop with 503 and Retry-After, and answers the rest', async () => {
    const { url, fo } = await serve({ budgetMs: 200 }, (app) =>
      app.get('/work', (_req, res) => {
        setTimeout(() => {
          spin(8);
          res.send('ok');
        }, 5);
      }),
    );
    const client = path.join(__dirname, '../fixtures/open-loop-client.js');
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        [client, `${url}/work`, '300', '1500'],
        { timeout: 15_000 },
        (error, stdout) => (error ? reject(error) : resolve(stdout)),
      ),
    );
    const { statuses, retryAfter, errors } = JSON.parse(out) as {
      statuses: Record<string, number>;
      retryAfter: string[];
      errors: number;
    };
    expect(errors).toBe(0);
    expect(Object.keys(statuses).sort()).toEqual(['200', '503']);
    expect(statuses['200']! + statuses['503']!).toBe(450);
    expect(retryAfter).toEqual(['1']);
    expect(fo.stats()).toMatchObject({ shed: 0, eventLoop: { shed: statuses['503'] } });
    // Once the loop is free again, the door opens.
    await waitFor(() => !fo.stats().eventLoop.shedding, 'the door to stop shedding', 3000);
  });
});
