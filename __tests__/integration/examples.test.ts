// The examples run as written: each is a file under examples/ that CI type-checks, and the code blocks of the
// README and docs/ are those files (scripts/check-examples.mjs). Imported, each example's app is tested with
// supertest for what its text claims; run as a program (`node --import tsx <file>`, as a user runs it), each
// listens, prints its URL and a curl to try, and that curl answers. The quick start runs here against the
// demo's own slow API, started in this process. Timing checks are generous windows: the machine is small and
// shared.
import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import supertest from 'supertest';
import { createSlowApiServer } from '../../demo-server/slow-api';
import { app as errorsApp } from '../../examples/errors';
import { createApp } from '../../examples/quick-start';
import { app as runApp } from '../../examples/run';
import { app as settleApp } from '../../examples/settle';
import * as shutdown from '../../examples/shutdown';
import * as tail from '../../examples/tail';
import * as workerThreads from '../../examples/worker-threads/app';

describe('the quick start example', () => {
  let api: http.Server;
  let apiUrl: string;
  let quickStart: ReturnType<typeof createApp>;

  beforeAll(async () => {
    api = createSlowApiServer();
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
    quickStart = createApp(apiUrl);
    await fetch(`${apiUrl}/?ms=0`); // the first fetch of the process pays for loading the HTTP client
  });
  afterAll(async () => {
    await quickStart.fo.close();
    api.closeAllConnections();
    await new Promise((resolve) => api.close(resolve));
  });

  const timed = async (path: string) => {
    const started = performance.now();
    const res = await supertest(quickStart.app).get(path);
    return { res, ms: performance.now() - started };
  };

  it('answers /profile with the merged JSON after its slowest step (300 ms), inside the 500 ms budget', async () => {
    const { res, ms } = await timed('/profile');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      name: 'express-fanout',
      orders: { service: 'slow-api', delayMs: 100, budgetHeader: expect.stringMatching(/^\d+$/) },
      recommendations: { service: 'slow-api', delayMs: 300, budgetHeader: expect.stringMatching(/^\d+$/) },
    });
    // The remaining budget travelled with the calls: never more than the 500 ms budget.
    expect(Number(res.body.orders.budgetHeader)).toBeLessThanOrEqual(500);
    expect(Number(res.body.orders.budgetHeader)).toBeGreaterThan(0);
    expect(ms).toBeGreaterThanOrEqual(295);
    expect(ms).toBeLessThan(495); // at 500 ms the recommendations would have been cut to their fallback
  });

  it('answers /profile at the 500 ms budget with the fallback when the recommendations are too slow', async () => {
    const { res, ms } = await timed('/profile?recoMs=3000');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      name: 'express-fanout',
      orders: { service: 'slow-api', delayMs: 100, budgetHeader: expect.stringMatching(/^\d+$/) },
      recommendations: [],
    });
    expect(ms).toBeGreaterThanOrEqual(495);
    expect(ms).toBeLessThan(1000);
  });

  it('answers / through gather(), with the fallback of the task over its 100 ms timeout', async () => {
    const { res, ms } = await timed('/');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      user: { service: 'slow-api', delayMs: 50, budgetHeader: expect.stringMatching(/^\d+$/) },
      news: null,
    });
    expect(ms).toBeGreaterThanOrEqual(95);
    expect(ms).toBeLessThan(400); // news alone would take 400 ms
  });
});

describe('the other examples', () => {
  it('settle: answers with what made it and the status of what did not, at the 300 ms budget', async () => {
    const started = performance.now();
    const res = await supertest(settleApp).get('/dashboard');
    const ms = performance.now() - started;
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      weather: { celsius: 21 },
      news: 'rejected',
      stocks: 'timeout',
      ms: { weather: expect.any(Number), news: expect.any(Number), stocks: expect.any(Number) },
    });
    expect(ms).toBeGreaterThanOrEqual(295);
    expect(ms).toBeLessThan(800); // stocks alone would take 1000 ms
  });

  it('run: runs dependent steps one after another under the budget, and answers 404 for no user', async () => {
    const res = await supertest(runApp).get('/users/1/team');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ team: 'engines', members: ['Ada', 'Grace'], leftMs: expect.any(Number) });
    expect(res.body.leftMs).toBeGreaterThan(0);
    expect(res.body.leftMs).toBeLessThan(400 - 50); // two steps of 30 ms were spent
    expect((await supertest(runApp).get('/users/2/team')).status).toBe(404);
  });

  it('errors: the error handler answers 502 without the cause, and 504 with the budget', async () => {
    const log = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const down = await supertest(errorsApp).get('/down');
      expect(down.status).toBe(502);
      expect(down.body).toEqual({ error: 'unavailable', tasks: ['db'] });
      expect(down.text).not.toContain('10.0.0.5');
      expect(log).toHaveBeenCalledWith('/down', expect.stringContaining('`db`'), expect.any(Error));
      const slow = await supertest(errorsApp).get('/slow');
      expect(slow.status).toBe(504);
      expect(slow.headers['x-budget-ms']).toBe('200');
      expect(slow.body).toEqual({ error: 'unavailable', tasks: ['db'] });
      // expose matters: a 4xx's message is for the client, a 5xx's is not
      const bad = await supertest(errorsApp).get('/users/x1');
      expect(bad.status).toBe(400);
      expect(bad.body).toEqual({ error: 'id must be digits, got "x1"' });
      const user = await supertest(errorsApp).get('/users/1');
      expect(user.status).toBe(200);
      expect(user.body).toEqual({ user: { id: '1', name: 'Ada' } });
    } finally {
      log.mockRestore();
    }
  });

  it('worker threads: runs worker.js on the pool, alone and inside a fan-out with a transferred buffer', async () => {
    const fib = await supertest(workerThreads.app).get('/fib');
    expect(fib.status).toBe(200);
    expect(fib.body).toEqual({ n: 25, value: 75025 });
    const both = await supertest(workerThreads.app).get('/');
    expect(both.status).toBe(200);
    expect(both.body).toEqual({
      bytes: expect.any(Number),
      digest: createHash('sha256').update('hello').digest('hex'),
    });
  });
});

describe('the examples that show a claim', () => {
  afterAll(() => Promise.all([tail.fo.close(), shutdown.fo.close(), workerThreads.fo.close()]));

  it('worker threads: a step over the budget is a 504 through next(), and the pool keeps serving', async () => {
    const late = await supertest(workerThreads.app).get('/fib?n=45');
    expect(late.status).toBe(504);
    const fib = await supertest(workerThreads.app).get('/fib?n=20');
    expect(fib.body).toEqual({ n: 20, value: 6765 });
  });

  it('tail: after 40 requests the retries, hedges and single-flight have fired; a tight budget skips ads', async () => {
    const statuses: number[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const answers = await Promise.all([1, 2, 3, 4].map(() => supertest(tail.app).get('/users/1')));
      statuses.push(...answers.map((answer) => answer.status));
    }
    expect(statuses).toEqual(Array(40).fill(200));
    const stats = (await supertest(tail.app).get('/stats')).body;
    expect(stats.retries).toBeGreaterThan(0); // every fifth profile call fails, and is retried
    expect(stats.hedges).toBeGreaterThan(0); // every tenth recommendations call is slow, past the p95 of the rest
    expect(stats.hedgeWins).toBeGreaterThan(0);
    expect(stats.coalesced).toBeGreaterThan(0); // four requests at once share the flags call
    const tight = await supertest(tail.app).get('/users/1').set('x-request-budget-ms', '100');
    expect(tight.status).toBe(200);
    expect(tight.body.ads).toEqual([]);
    expect(tight.headers['server-timing']).toMatch(/(^|, )ads;dur=[\d.]+;desc="skipped/);
  }, 30_000);

  it('shutdown: the app answers before any signal', async () => {
    const res = await supertest(shutdown.app).get('/');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ now: expect.any(String) });
  });
});

describe('each example, run as a program', () => {
  const root = join(__dirname, '..', '..');
  let services: http.Server;
  let servicesUrl: string;
  beforeAll(async () => {
    // What the OpenTelemetry example calls: answers every path with JSON.
    services = http.createServer((_req, res) =>
      res.setHeader('content-type', 'application/json').end('{"id":1}'),
    );
    await new Promise<void>((resolve) => services.listen(0, '127.0.0.1', resolve));
    servicesUrl = `http://127.0.0.1:${(services.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => services.close(resolve)));

  /** Runs an example as a user does, with PORT=0, until it prints its URL and the curl to try. */
  async function start(file: string, env: Record<string, string> = {}) {
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: root,
      env: { ...process.env, PORT: '0', ...env },
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const started = Date.now();
    while (!/Try: curl -i \S+/.test(output)) {
      if (child.exitCode !== null || Date.now() - started > 30_000) {
        child.kill('SIGKILL');
        throw new Error(`${file} did not print its URL and a curl to try:\n${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const url = /Listening on (http:\/\/localhost:\d+)/.exec(output)?.[1];
    const tryUrl = /Try: curl -i (\S+)/.exec(output)![1]!;
    return { child, url, tryUrl, exited, output: () => output };
  }
  const stop = async ({
    child,
    exited,
  }: {
    child: ChildProcessWithoutNullStreams;
    exited: Promise<unknown>;
  }) => {
    child.kill('SIGKILL');
    await exited;
  };

  const callees = () => ({
    USERS_URL: servicesUrl,
    ORDERS_URL: servicesUrl,
    CART_URL: servicesUrl,
    PAYMENTS_URL: servicesUrl,
  });
  const programs: Array<{ file: string; status: number; env?: () => Record<string, string> }> = [
    { file: 'examples/quick-start.ts', status: 200 },
    { file: 'examples/gather.ts', status: 200 },
    { file: 'examples/route-budget.ts', status: 200 },
    { file: 'examples/settle.ts', status: 200 },
    { file: 'examples/run.ts', status: 200 },
    { file: 'examples/typed-after.ts', status: 200 },
    { file: 'examples/errors.ts', status: 400 },
    { file: 'examples/tail.ts', status: 200 },
    { file: 'examples/shutdown.ts', status: 200 },
    { file: 'examples/prometheus.ts', status: 200 },
    { file: 'examples/otel.ts', status: 200, env: callees },
    { file: 'examples/across-services.ts', status: 200, env: callees },
    { file: 'examples/worker-threads/app.ts', status: 200 },
    { file: 'examples/typed-worker/app.ts', status: 200 },
  ];

  it('covers every example that is a program (worker scripts, type declarations and the testing guide are not)', () => {
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
        entry.isDirectory() ? files(join(dir, entry.name)) : [relative(root, join(dir, entry.name))],
      );
    const programsHere = files(join(root, 'examples')).filter(
      (file) =>
        /\.ts$/.test(file) &&
        !/(^|\/)worker(-methods)?\.ts$/.test(file) &&
        !file.startsWith('examples/testing/'), // jest runs those: the testing guide's tests
    );
    expect(programs.map(({ file }) => file).sort()).toEqual(programsHere.sort());
  });

  it.each(programs)(
    '$file listens on PORT, prints its URL, and the curl it suggests answers $status',
    async ({ file, status, env }) => {
      const example = await start(file, env?.() ?? {});
      try {
        expect(example.url).toMatch(/^http:\/\/localhost:\d+$/);
        expect(example.tryUrl.startsWith(example.url!)).toBe(true);
        const res = await fetch(example.tryUrl);
        expect({ file, status: res.status }).toEqual({ file, status });
      } finally {
        await stop(example);
      }
    },
    60_000,
  );

  it('shutdown: SIGTERM drains, closes the middleware and exits with 0', async () => {
    const example = await start('examples/shutdown.ts');
    try {
      expect((await fetch(example.tryUrl)).status).toBe(200);
      example.child.kill('SIGTERM');
      expect(await example.exited).toBe(0);
      expect(example.output()).toMatch(/SIGTERM: draining\n(.|\n)*closed/);
    } finally {
      await stop(example);
    }
  }, 60_000);
});

describe('the README examples check (scripts/check-examples.mjs)', () => {
  const root = join(__dirname, '..', '..');
  let copy: string;
  const check = () =>
    promisify(execFile)(process.execPath, [join(copy, 'scripts', 'check-examples.mjs')]).then(
      ({ stdout }) => ({ code: 0, out: stdout }),
      (error: { code: number; stderr: string }) => ({ code: error.code, out: error.stderr }),
    );
  const readme = () => readFileSync(join(copy, 'README.md'), 'utf8');

  beforeEach(() => {
    copy = mkdtempSync(join(tmpdir(), 'express-fanout-examples-'));
    for (const path of ['README.md', 'docs', 'examples', 'scripts/check-examples.mjs']) {
      cpSync(join(root, path), join(copy, path), { recursive: true });
    }
  });
  afterEach(() => rmSync(copy, { recursive: true, force: true }));

  it('passes on the repository as it is', async () => {
    expect(await check()).toEqual({ code: 0, out: expect.stringMatching(/^README examples: \d+ blocks/) });
  });

  it('fails naming the line when a README block drifts from its file, and --write copies the file back', async () => {
    writeFileSync(
      join(copy, 'README.md'),
      readme().replace('{ budgetMs: 500 }); // options', '{ budgetMs: 50 }); // options'),
    );
    const { code, out } = await check();
    expect(code).toBe(1);
    expect(out).toMatch(/README\.md:\d+: differs from examples\/quick-start\.ts line \d+:/);
    expect(out).toContain('const fo = fanout({ budgetMs: 50 });');
    await promisify(execFile)(process.execPath, [join(copy, 'scripts', 'check-examples.mjs'), '--write']);
    expect(readme()).toBe(readFileSync(join(root, 'README.md'), 'utf8'));
  });

  it('checks the guides in docs/ too: a drifted block there fails naming the guide, and --write fixes it', async () => {
    const guide = join(copy, 'docs', 'request-helper.md');
    writeFileSync(
      guide,
      readFileSync(guide, 'utf8').replace('fanout({ budgetMs: 300 })', 'fanout({ budgetMs: 30 })'),
    );
    const { code, out } = await check();
    expect(code).toBe(1);
    expect(out).toMatch(/docs\/request-helper\.md:\d+: differs from examples\/settle\.ts line \d+:/);
    await promisify(execFile)(process.execPath, [join(copy, 'scripts', 'check-examples.mjs'), '--write']);
    expect(readFileSync(guide, 'utf8')).toBe(readFileSync(join(root, 'docs', 'request-helper.md'), 'utf8'));
  });

  it('fails on a TypeScript block without its marker, and on an example file the README never shows', async () => {
    writeFileSync(join(copy, 'README.md'), readme() + '\n```ts\nconst x = 1;\n```\n');
    writeFileSync(join(copy, 'examples', 'unshown.ts'), 'export {};\n');
    const { code, out } = await check();
    expect(code).toBe(1);
    expect(out).toMatch(/README\.md:\d+: a `ts` block without <!-- example: examples\/… --> above it/);
    expect(out).toContain('examples/unshown.ts is shown nowhere in README.md');
  });
});
