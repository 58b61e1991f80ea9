import { execFile } from 'node:child_process';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { fanout } from 'express-fanout';
import * as loopMonitor from '../../lib/loop-monitor';
import { ManualLoopMonitor, type LoopMonitorLease } from '../../lib/loop-monitor';
import { sleep, waitFor } from './helpers/async';
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

/** The loop is the queue: 1500 ms behind (longer than the 1000 ms budgets below), fully busy. */
function overloaded(monitor: ManualLoopMonitor): void {
  monitor.recentDelay = 1500;
  monitor.util = 1;
}

const spin = (ms: number): void => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};

describe.each(expressVersions)("the process's door (%s)", (_version, express) => {
  const { serve } = useHarness(express);
  afterEach(() => jest.restoreAllMocks());

  it('sheds a request with 503 and Retry-After before its handler runs while the loop is the queue', async () => {
    const monitor = forcedMonitor();
    let handled = 0;
    const { http: client, fo } = await serve({ budgetMs: 1000 }, (app) =>
      app.get('/', (_req, res) => {
        handled++;
        res.send('ok');
      }),
    );
    await client.get('/').expect(200, 'ok');
    overloaded(monitor);
    const res = await client.get('/').expect(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(handled).toBe(1);
    expect(fo.stats()).toMatchObject({
      shed: 0, // tasks shed from the queues: none
      eventLoop: { delayMs: 1500, utilization: 1, shed: 1 },
    });
  });

  it('passes the OverloadedError to Express, its message naming the loop delay and the budget', async () => {
    const monitor = forcedMonitor();
    const { http: client, errors } = await serve({ budgetMs: 1000 }, (app) =>
      app.get('/', (_req, res) => res.send('ok')),
    );
    overloaded(monitor);
    await client.get('/').expect(503);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ name: 'OverloadedError', status: 503, tasks: [] });
    expect((errors[0] as Error).message).toMatch(
      /^The request shed: the event loop is 1500 ms behind and the 0 requests in flight would keep this one ~\d+ ms, over its 1000 ms budget$/,
    );
  });

  it("judges a request by its own budget: the budget header's shorter budget is shed, the default admitted", async () => {
    const monitor = forcedMonitor();
    // 1500 ms behind, nothing measured yet: a request is expected to take about that long.
    const { http: client, fo } = await serve({ budgetMs: 5000, maxBudgetMs: 5000 }, (app) =>
      app.get(
        '/',
        report(async (req) => req.fanout.remainingMs() > 0),
      ),
    );
    overloaded(monitor);
    await client.get('/').expect(200);
    await client.get('/').set('x-request-budget-ms', '300').expect(503);
    expect(fo.stats().eventLoop.shed).toBe(1);
  });

  it('counts every admitted request out once its response ends: answered, failed, or its client gone', async () => {
    const monitor = forcedMonitor();
    const { http: client, url } = await serve({ budgetMs: 1000 }, (app) => {
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
    await sleep(50);
    gone.destroy();
    await sleep(50);
    overloaded(monitor);
    const shed = await client.get('/').expect(503);
    expect(shed.text).toMatch(/the 0 requests in flight/);
  });

  it('counts a pipelined request whose client leaves before its turn out once (its response never closes)', async () => {
    const monitor = forcedMonitor();
    const { server } = await serve({ budgetMs: 1000 }, (app) => {
      app.get('/hang', () => undefined);
      app.get('/probe', (_req, res) => res.send('ok'));
    });
    const { port } = server.address() as AddressInfo;
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('GET /hang HTTP/1.1\r\nHost: x\r\n\r\nGET /hang HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleep(50);
    socket.destroy();
    await sleep(50);
    overloaded(monitor);
    const probe = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      http
        .get(`http://127.0.0.1:${port}/probe`, { agent: false }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });
    expect(probe.status).toBe(503);
    expect(probe.body).toMatch(/the 0 requests in flight/);
  });

  it('is off with eventLoop: false: no monitor taken, nothing shed, zeros in stats()', async () => {
    const monitor = forcedMonitor();
    const { http: client, fo } = await serve({ eventLoop: false }, (app) =>
      app.get('/', (_req, res) => res.send('ok')),
    );
    overloaded(monitor);
    await client.get('/').expect(200);
    expect(loopMonitor.acquireLoopMonitor).not.toHaveBeenCalled();
    expect(fo.stats().eventLoop).toEqual({ delayMs: 0, utilization: 0, shedding: false, shed: 0 });
  });

  it('releases its monitor once when the middleware closes', async () => {
    const monitor = forcedMonitor();
    const { fo } = await serve({}, (app) => app.get('/', (_req, res) => res.send('ok')));
    await fo.close();
    await fo.close();
    expect(monitor.releases).toBe(1);
  });

  it('does not judge a request again in a second mount of the same instance, nor in a nested one', async () => {
    const monitor = forcedMonitor();
    const { http: client, app, fo } = await serve({ budgetMs: 1000 }, () => undefined);
    const inner = fanout({ budgetMs: 1000 });
    const router = express.Router();
    router.use(fo, inner);
    router.get('/', (_req, res) => res.send('ok'));
    app.use(router);
    await client.get('/').expect(200);
    overloaded(monitor);
    // The outer mount sheds; had it admitted, neither the second mount nor the inner instance would judge.
    await client.get('/').expect(503);
    expect(fo.stats().eventLoop.shed).toBe(1);
    expect(inner.stats().eventLoop.shed).toBe(0);
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
