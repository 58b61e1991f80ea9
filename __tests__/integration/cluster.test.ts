import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { drainable, fanout } from 'express-fanout';
import { freePort, startService, type Service } from './helpers/services';

/**
 * A service under node:cluster with two workers (demo-server/cluster.ts's primary, the package's drainable()):
 * SIGTERM to the primary under load on keep-alive connections. Every request that reached a worker gets an
 * answer (200, or 503 + Connection: close during the drain); none is reset; the primary exits once both
 * workers have, within budgetMs + graceMs.
 */
const LOOPS = 12;

interface Tally {
  ok: number;
  shed: number;
  other: number;
  reset: string[];
  refused: number;
}

describe('node:cluster: SIGTERM to the primary under load', () => {
  let service: Service | undefined;

  afterAll(async () => {
    await service?.stop('SIGKILL');
  });

  it('forwards it to the workers, which drain: every request answered 200 or 503, none reset', async () => {
    const port = await freePort();
    service = await startService('cluster-service.ts', { PORT: String(port), WORKERS: '2' });
    const started = Date.now();
    while (service.output.filter((l) => l.startsWith('READY')).length < 2) {
      if (Date.now() - started > 20_000) throw new Error(`workers not ready:\n${service.output.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const tally: Tally = { ok: 0, shed: 0, other: 0, reset: [], refused: 0 };
    const pids = new Set<number>();
    let stop = false;
    // Each loop: one keep-alive connection, one request after another, until it is shed or the port refuses connections.
    const loop = async (): Promise<void> => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        while (!stop) {
          const outcome = await request(port, agent);
          if (outcome.kind === 'answer') {
            if (outcome.status === 200) {
              tally.ok++;
              pids.add(outcome.pid!);
            } else if (outcome.status === 503) {
              // Shed during the drain: a client (or its load balancer) goes to another instance.
              tally.shed++;
              return;
            } else tally.other++;
          } else if (outcome.kind === 'refused') {
            tally.refused++;
            return;
          } else tally.reset.push(outcome.error);
        }
      } finally {
        agent.destroy();
      }
    };
    const loops = Array.from({ length: LOOPS }, loop);
    await new Promise((resolve) => setTimeout(resolve, 600));
    const okBefore = tally.ok;
    const signalledAt = performance.now();
    service.child.kill('SIGTERM');
    const code = await Promise.race([
      service.exited,
      new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 10_000)),
    ]);
    const exitedMs = performance.now() - signalledAt;
    stop = true;
    await Promise.all(loops);
    process.stdout.write(
      `cluster drain: ${tally.ok} answered 200 (${okBefore} before SIGTERM), ${tally.shed} 503, ` +
        `${tally.refused} loops refused after the close, ${tally.reset.length} reset; primary exited after ${exitedMs.toFixed(0)} ms\n`,
    );
    expect(code).toBe(0);
    expect(pids.size).toBe(2);
    expect(okBefore).toBeGreaterThan(50);
    expect(tally.reset).toEqual([]);
    expect(tally.other).toBe(0);
    expect(exitedMs).toBeLessThan(1000 + 200 + 500);
    expect(service.output.some((l) => l.includes('every worker has stopped'))).toBe(true);
  }, 60_000);
});

describe('drainable(server)', () => {
  it('lets the answer in flight go out, sheds the next request on its connection, closes an idle one, without waiting for the client', async () => {
    const fo = fanout({ budgetMs: 1000, graceMs: 100 });
    const app = express();
    app.use(fo);
    app.get('/work', async (req, res) => {
      await req.fanout.run(() => new Promise((resolve) => setTimeout(resolve, Number(req.query.ms))));
      res.json({ ok: true });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const port = (server.address() as AddressInfo).port;
    const drain = drainable(server);
    const busy = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const idle = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // An idle keep-alive connection: one answered request, then nothing.
      expect((await request(port, idle, '/work?ms=1')).kind).toBe('answer');
      const idleSocket = Object.values(idle.freeSockets)[0]![0]!;
      const idleClosed = new Promise((resolve) => idleSocket.once('close', resolve));
      const inFlight = request(port, busy, '/work?ms=200');
      await new Promise((resolve) => setTimeout(resolve, 50));
      const began = performance.now();
      const drained = drain.drain({ timeoutMs: 1100 });
      expect(drain.draining).toBe(true);
      expect(await inFlight).toEqual({ kind: 'answer', status: 200 });
      // The next request on the busy connection: shed, not served on the client's timetable.
      expect(await request(port, busy, '/work?ms=1')).toEqual({ kind: 'answer', status: 503 });
      await drained;
      await idleClosed;
      expect(performance.now() - began).toBeLessThan(150 + 100 + 200);
    } finally {
      busy.destroy();
      idle.destroy();
      server.closeAllConnections();
      await fo.close();
    }
  });
});

type Outcome =
  { kind: 'answer'; status: number; pid?: number } | { kind: 'refused' } | { kind: 'reset'; error: string };

function request(port: number, agent: http.Agent, path = '/work?ms=30'): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        let pid: number | undefined;
        if (res.statusCode === 200) pid = (JSON.parse(body) as { pid?: number }).pid;
        resolve({ kind: 'answer', status: res.statusCode!, ...(pid === undefined ? {} : { pid }) });
      });
      res.on('error', (error) => resolve({ kind: 'reset', error: String(error) }));
    });
    req.on('error', (error: NodeJS.ErrnoException) =>
      resolve(error.code === 'ECONNREFUSED' ? { kind: 'refused' } : { kind: 'reset', error: String(error) }),
    );
  });
}
