// `npm run soak [-- --requests 100000] [-- --faults 0.1] [-- --load 0.7]`: a soak of the middleware on loopback.
// A server process (Express 5 + fanout() from the sources, run with --expose-gc) answers a mix of requests of
// which `--faults` fail in every way a task can (throws, rejects a non-Error, never settles, returns a hostile
// thenable, crashes a worker call, a client that leaves). Its capacity is measured first (closed loop), then the
// requests are sent open-loop at `--load` of it. Heap used, RSS, active handles and worker threads of the server,
// after global.gc(), are compared at the end with the start (after a warm-up at the same load): each must be back
// within 10 %. Prints the numbers as a table; exits 1 when a number is over, a request got a status its kind does
// not allow, the server saw an unhandled rejection, or a slot or queued task was left.
import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import { fanout, gather, type TaskContext } from 'express-fanout';

const ROLE = process.env.SOAK_ROLE;
const WORKER_SCRIPT = join(__dirname, '..', '__tests__', 'fixtures', 'reliability-worker.js');
const BUDGET_MS = 100;
const LIMIT = 0.1;

/** The kinds of request, their share of the traffic and the statuses each may get. */
const KINDS = {
  ok: { share: 0.88, statuses: [200, 503, 504] },
  worker: { share: 0.02, statuses: [200, 503, 504] },
  throws: { share: 0.02, statuses: [502, 503, 504] },
  rejectsNonError: { share: 0.015, statuses: [502, 503, 504] },
  neverSettles: { share: 0.015, statuses: [503, 504] },
  hostileThenable: { share: 0.015, statuses: [502, 503, 504] },
  fallback: { share: 0.01, statuses: [200, 503, 504] },
  workerThrows: { share: 0.005, statuses: [502, 503, 504] },
  workerHangs: { share: 0.001, statuses: [503, 504] },
  // The client leaves after 20 ms; a client stalled past the budget may see the 504 first.
  clientLeaves: { share: 0.019, statuses: [504] },
} as const;
type Kind = keyof typeof KINDS;
const FAULTS: readonly Kind[] = (Object.keys(KINDS) as Kind[]).filter((k) => k !== 'ok' && k !== 'worker');

interface Sample {
  heapUsed: number;
  rss: number;
  handles: number;
  threads: number;
  running: number;
  queued: number;
  unhandled: number;
  stats: unknown;
}

if (ROLE === 'server') void server();
else
  void main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );

async function server(): Promise<void> {
  let unhandled = 0;
  process.on('unhandledRejection', (reason) => {
    unhandled++;
    console.error('soak server: unhandled rejection', reason);
  });
  const fo = fanout({
    budgetMs: BUDGET_MS,
    graceMs: 50,
    concurrency: 256,
    perRequest: 8,
    maxQueue: 1024,
    serverTiming: true,
    workers: { script: WORKER_SCRIPT, minWorkers: 2, maxWorkers: 2, execArgv: [] },
  });
  const tick = () => new Promise<number>((resolve) => setImmediate(() => resolve(2)));
  const wait = (ms: number, signal: AbortSignal) =>
    new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve(ms);
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  const usual = {
    a: () => 1,
    b: tick,
    c: ({ signal }: { signal: AbortSignal }) => wait(1 + Math.floor(Math.random() * 3), signal),
  };
  const app = express();
  app.use(fo);
  app.get('/ok', gather(usual));
  app.get('/worker', gather({ ...usual, w: (ctx: TaskContext) => ctx.worker('resolves') }));
  app.get(
    '/throws',
    gather({
      ...usual,
      bad: () => {
        throw new Error('thrown');
      },
    }),
  );
  app.get('/rejectsNonError', gather({ ...usual, bad: () => Promise.reject('a string') }));
  app.get('/neverSettles', gather({ ...usual, bad: () => new Promise(() => undefined) }));
  app.get(
    '/hostileThenable',
    gather({
      ...usual,
      bad: () => ({
        get then(): never {
          throw new Error('the then getter throws');
        },
      }),
    }),
  );
  app.get('/fallback', gather({ ...usual, bad: { run: () => Promise.reject(new Error('x')), fallback: 0 } }));
  app.get('/workerThrows', gather({ ...usual, bad: (ctx: TaskContext) => ctx.worker('throwsSync') }));
  app.get('/workerHangs', gather({ ...usual, bad: (ctx: TaskContext) => ctx.worker('never') }));
  app.get('/clientLeaves', gather({ ...usual, slow: ({ signal }: TaskContext) => wait(500, signal) }));
  // Answers errors as Express's default handler would (status, headers), without logging each one.
  app.use(
    (
      error: { status?: number; headers?: Record<string, string> },
      _req: Request,
      res: Response,
      next: NextFunction,
    ) => {
      if (res.headersSent) return next(error);
      if (error.headers) res.set(error.headers);
      res.status(error.status ?? 500).end();
    },
  );
  const listener = http.createServer(app);
  listener.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));

  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('the soak server needs --expose-gc');
  process.on('message', (message: { type: string }) => {
    if (message.type === 'measure') {
      void (async () => {
        // Let write-offs (graceMs) and thread replacements finish, then collect twice.
        for (let i = 0; i < 3; i++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          gc();
        }
        const s = fo.stats();
        const sample: Sample = {
          heapUsed: process.memoryUsage().heapUsed,
          rss: process.memoryUsage().rss,
          handles: process.getActiveResourcesInfo().length,
          threads: s.workers.busy + s.workers.idle,
          running: s.running,
          queued: s.queued,
          unhandled,
          stats: s,
        };
        process.send!({ type: 'sample', sample });
      })();
    } else if (message.type === 'stop') {
      listener.closeAllConnections();
      listener.close();
      void fo.close().then(() => process.exit(0));
    }
  });
  process.send!({ type: 'ready', port: (listener.address() as AddressInfo).port });
}

interface Options {
  requests: number;
  faults: number;
  load: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { requests: 100_000, faults: 0.1, load: 0.7 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined];
    const value = Number(inline ?? argv[++i]);
    const key = { '--requests': 'requests', '--faults': 'faults', '--load': 'load' }[flag] as keyof Options;
    if (!key || !Number.isFinite(value) || value <= 0) {
      throw new Error(
        `usage: npm run soak [-- --requests 100000] [-- --faults 0.1] [-- --load 0.7]; got \`${argv[i]}\``,
      );
    }
    options[key] = value;
  }
  options.requests = Math.round(options.requests);
  return options;
}

/** Picks a request kind: faults make up `faults` of the traffic, in the proportions of KINDS. */
function picker(faults: number): () => Kind {
  const faultTotal = FAULTS.reduce((n, k) => n + KINDS[k].share, 0);
  const okTotal = KINDS.ok.share + KINDS.worker.share;
  const table: [Kind, number][] = (Object.keys(KINDS) as Kind[]).map((k) => [
    k,
    FAULTS.includes(k) ? (KINDS[k].share / faultTotal) * faults : (KINDS[k].share / okTotal) * (1 - faults),
  ]);
  return () => {
    let r = Math.random();
    for (const [kind, p] of table) if ((r -= p) < 0) return kind;
    return 'ok';
  };
}

interface Tally {
  sent: number;
  done: number;
  byKind: Map<string, number>;
  unexpected: Map<string, number>;
}

function hit(agent: http.Agent, port: number, kind: Kind, tally: Tally): Promise<void> {
  tally.sent++;
  return new Promise((resolve) => {
    let counted = false;
    const count = (label: string, ok: boolean) => {
      if (counted) return;
      counted = true;
      tally.done++;
      const key = `${kind} ${label}`;
      tally.byKind.set(key, (tally.byKind.get(key) ?? 0) + 1);
      if (!ok) tally.unexpected.set(key, (tally.unexpected.get(key) ?? 0) + 1);
      resolve();
    };
    const req = http.get({ host: '127.0.0.1', port, path: `/${kind}`, agent }, (res) => {
      res.resume();
      res.on('end', () =>
        count(String(res.statusCode), (KINDS[kind].statuses as readonly number[]).includes(res.statusCode!)),
      );
      res.on('error', () => count('error', false));
    });
    req.on('error', () => count(kind === 'clientLeaves' ? 'left' : 'error', kind === 'clientLeaves'));
    if (kind === 'clientLeaves') setTimeout(() => req.destroy(), 20);
  });
}

/** Closed loop: `connections` requests in flight at all times for `ms`; the completions per second. */
async function capacity(port: number, pick: () => Kind, connections: number, ms: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const tally: Tally = { sent: 0, done: 0, byKind: new Map(), unexpected: new Map() };
  const end = performance.now() + ms;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < end) await hit(agent, port, pick(), tally);
    }),
  );
  const rate = tally.done / ((performance.now() - start) / 1000);
  agent.destroy();
  return rate;
}

/** Open loop: `total` requests at `rate` per second, whatever the answers take (at most `maxInFlight` open). */
async function openLoop(
  port: number,
  pick: () => Kind,
  total: number,
  rate: number,
  tally: Tally,
): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const maxInFlight = 2000;
  let inFlight = 0;
  let skipped = 0;
  const pending = new Set<Promise<void>>();
  const start = performance.now();
  let issued = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
      while (issued < due) {
        issued++;
        if (inFlight >= maxInFlight) {
          skipped++;
          continue;
        }
        inFlight++;
        const p = hit(agent, port, pick(), tally).then(() => {
          inFlight--;
          pending.delete(p);
        });
        pending.add(p);
      }
      if (issued >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  await Promise.all(pending);
  agent.destroy();
  return skipped;
}

function measure(child: ChildProcess): Promise<Sample> {
  return new Promise((resolve) => {
    const onMessage = (message: { type: string; sample: Sample }) => {
      if (message.type !== 'sample') return;
      child.off('message', onMessage);
      resolve(message.sample);
    };
    child.on('message', onMessage);
    child.send({ type: 'measure' });
  });
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const child = fork(__filename, [], {
    env: { ...process.env, SOAK_ROLE: 'server', NODE_ENV: 'production' },
    execArgv: ['--expose-gc', '--require', 'tsx/cjs'],
  });
  let died: string | undefined;
  child.on('exit', (code, signal) => (died = `the server exited (${signal ?? code})`));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: { type: string; port: number }) => resolve(m.port));
    child.once('exit', () => reject(new Error(died)));
  });
  const pick = picker(options.faults);
  const t0 = performance.now();

  const measured = await capacity(port, pick, 64, options.requests >= 50_000 ? 5000 : 3000);
  const rate = measured * options.load;
  const warmup = Math.max(2000, Math.round(options.requests / 10));
  console.log(
    `soak: capacity ${measured.toFixed(0)} req/s (64 connections, closed loop); ${options.requests} requests ` +
      `at ${rate.toFixed(0)} req/s (${options.load * 100} %), ${options.faults * 100} % faults; warm-up ${warmup}`,
  );
  const warmTally: Tally = { sent: 0, done: 0, byKind: new Map(), unexpected: new Map() };
  await openLoop(port, pick, warmup, rate, warmTally);
  const start = await measure(child);

  const tally: Tally = { sent: 0, done: 0, byKind: new Map(), unexpected: new Map() };
  const soakStart = performance.now();
  const skipped = await openLoop(port, pick, options.requests, rate, tally);
  const soakS = (performance.now() - soakStart) / 1000;
  const end = died ? undefined : await measure(child);
  child.send({ type: 'stop' });
  await new Promise((resolve) => child.once('exit', resolve));

  if (!end) {
    console.error(`soak: FAIL: ${died}`);
    return 1;
  }
  const rows: [string, number, number, (n: number) => string][] = [
    ['heap used', start.heapUsed, end.heapUsed, mb],
    ['rss', start.rss, end.rss, mb],
    ['active handles', start.handles, end.handles, String],
    ['worker threads', start.threads, end.threads, String],
  ];
  const failures: string[] = [];
  console.log('\n| after gc()      |      start |        end |   change | within 10 % |');
  console.log('| --------------- | ---------: | ---------: | -------: | ----------- |');
  for (const [name, a, b, show] of rows) {
    const change = a === 0 ? (b === 0 ? 0 : Infinity) : (b - a) / a;
    const ok = b <= a * (1 + LIMIT);
    if (!ok) failures.push(`${name} grew ${(change * 100).toFixed(1)} % (${show(a)} -> ${show(b)})`);
    console.log(
      `| ${name.padEnd(15)} | ${show(a).padStart(10)} | ${show(b).padStart(10)} | ${`${(change * 100).toFixed(1)} %`.padStart(8)} | ${ok ? 'yes' : 'NO'.padEnd(11)} |`,
    );
  }
  const statuses = [...tally.byKind].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}: ${n}`);
  console.log(
    `\n${tally.done} of ${options.requests} requests answered in ${soakS.toFixed(1)} s ` +
      `(${(tally.done / soakS).toFixed(0)} req/s), ${skipped} not sent (client backlog); total ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  console.log(`statuses: ${statuses.join(', ')}`);
  console.log(`server stats at the end: ${JSON.stringify(end.stats)}`);
  if (tally.unexpected.size)
    failures.push(`unexpected outcomes: ${JSON.stringify(Object.fromEntries(tally.unexpected))}`);
  if (end.unhandled > 0) failures.push(`${end.unhandled} unhandled rejections in the server`);
  if (end.running !== 0 || end.queued !== 0)
    failures.push(`left: ${end.running} running, ${end.queued} queued`);
  if (tally.done + skipped !== options.requests)
    failures.push(`${options.requests - tally.done - skipped} requests lost`);
  if (skipped > options.requests * 0.01)
    failures.push(`${skipped} requests not sent: the load was over capacity`);
  if (failures.length) {
    for (const f of failures) console.error(`soak: FAIL: ${f}`);
    return 1;
  }
  console.log('soak: PASS');
  return 0;
}
