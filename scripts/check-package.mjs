// Tries the package as a new user would. Packs it as npm would publish it, from a fresh copy of the source (no
// `dist/`: the `prepare` script must build it, as it does for a git install), installs the tarball into a scratch
// project from the registry (its dependencies included, the way `npm install express-fanout` gets them), then:
// - loads it with require() and import, and checks both give the same implementation;
// - compiles a strict consumer (`strict`, `skipLibCheck: false`, `exactOptionalPropertyTypes`,
//   `noUncheckedIndexedAccess`) that uses the whole public surface, as CommonJS (`module: node16`, and the older
//   `commonjs` + `node10` resolution with and without `esModuleInterop`, the latter written with
//   `import express = require('express')`) and as an ES module (`"type": "module"`, `module: nodenext`), with
//   TypeScript 5.9 (the repo's) and TypeScript 7 (installed in the scratch project; it has no `node10`
//   resolution and no `esModuleInterop: false`, so it compiles the node16, nodenext and `module: commonjs`
//   projects), against the oldest supported `@types/node` and the newest, each with `@types/express` 4 and 5.
//   The oldest is the newest 20.x: early 20.x releases do not compile themselves under TypeScript 5.9 with
//   `skipLibCheck: false` (their `Buffer` no longer extends `Uint8Array<ArrayBufferLike>`), whatever package
//   uses them. With
//   `skipLibCheck: false` every declaration file the consumer reaches is checked, ours and our imports of
//   `node:*` types included (`@types/node` 26 dropped `TransferListItem`, which the shipped types once imported;
//   a default import of `node:http` once failed every consumer without `esModuleInterop`);
//   `// @ts-expect-error` lines prove the typing also refuses what it should;
// - runs the compiled consumer in both module modes: a request through each helper, a worker call with
//   `transfer`, the error classes through an error handler.
// Usage: node scripts/check-package.mjs [--keep] [--quick]: --keep leaves the scratch project for a look,
// --quick compiles against the newest @types/node and @types/express only.
import { execFile, execFileSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const keep = process.argv.includes('--keep');
const quick = process.argv.includes('--quick');
const scratch = mkdtempSync(join(tmpdir(), 'express-fanout-pack-'));
const COMPILERS = {
  5.9: join(root, 'node_modules/typescript/bin/tsc'),
  7: join(scratch, 'node_modules/typescript/bin/tsc'),
};
const run = (cmd, args, opts = {}) =>
  execFileSync(cmd, args, { cwd: scratch, stdio: 'pipe', encoding: 'utf8', ...opts });
// Shows what a failed command printed (execFileSync's own message only says it failed).
const explain = (error) =>
  [error.message.split('\n')[0], error.stdout, error.stderr].filter(Boolean).join('\n');
const npmInstall = (specs) =>
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...specs]);
const installed = (name) =>
  JSON.parse(readFileSync(join(scratch, 'node_modules', name, 'package.json'), 'utf8')).version;

// The consumer: every public name, each helper, the WorkerMethods augmentation, `transfer`, the error classes.
// Shared by the CommonJS and the ES module project, so nothing in it depends on the module system.
const CONSUMER = `import { join } from 'node:path';
import express, { type ErrorRequestHandler, type Express } from 'express';
import {
  BudgetExceededError,
  CallTooLargeError,
  ClientClosedError,
  DownstreamError,
  FanoutError,
  OverloadedError,
  SiblingFailedError,
  TaskFailedError,
  TaskSkippedError,
  WorkerArgumentsError,
  WorkerCrashedError,
  WorkerScriptError,
  budget,
  fanout,
  gather,
  parseServerTiming,
  type CallOptions,
  type FanoutMiddleware,
  type FanoutOptions,
  type FanoutStats,
  type Settled,
  type TaskContext,
  type TaskEvent,
  type TaskTiming,
  type ServerTimings,
  type Transferable,
  type WorkerResourceLimits,
} from 'express-fanout';

// Every error class of the Errors table imports.
export const exported = [CallTooLargeError, DownstreamError, TaskSkippedError, WorkerArgumentsError].map((c) => c.name);
// @ts-expect-error a task is a function or { run }: "task \`a\` must be a function or { run }"
export const notATask = () => gather({ a: 5 });

declare module 'express-fanout' {
  interface WorkerMethods {
    fib(n: number): number;
    sum(data: ArrayBuffer): number;
  }
}

export const events: string[] = [];
const limits: WorkerResourceLimits = { maxOldGenerationSizeMb: 64 };
const options: FanoutOptions = {
  budgetMs: 2000,
  perRequest: 4,
  serverTiming: true,
  workers: { script: join(process.cwd(), 'worker.cjs'), maxWorkers: 1, resourceLimits: limits },
  onTask: (event: TaskEvent) => void events.push(event.name + ':' + event.status),
};
export function typo(): string {
  try {
    // @ts-expect-error an unknown option: refused by the compiler, and at run time
    fanout({ budgetMS: 5 });
    return 'accepted';
  } catch (error) {
    return error instanceof TypeError ? error.message : 'not a TypeError';
  }
}

export function createApp(): { app: Express; fo: FanoutMiddleware } {
  const fo = fanout(options);
  const app = express();
  app.use(fo);

  app.get('/gather', gather({ a: () => 1, b: { run: async ({ signal }: TaskContext) => (signal.aborted ? '' : 'b'), fallback: null } }));
  app.get('/mapped', gather((req) => ({ path: () => req.path }), { status: 201, map: (v) => ({ length: v.path.length }) }));

  app.get('/all', async (req, res, next) => {
    try {
      const call: CallOptions = { budgetMs: 1000 };
      const { a, b, c } = await req.fanout.all(
        {
          a: async () => 42,
          b: { run: ({ results }) => 'after ' + String(results['a']), after: ['a'], timeoutMs: 500 },
          c: { run: async (): Promise<number> => { throw new Error('down'); }, fallback: 'none' },
        },
        call,
      );
      const n: number = a;
      const s: string = b;
      const u: number | string = c;
      // @ts-expect-error c may be the fallback string
      const wrong: number = c;
      if (req.query['never'] !== undefined) {
        // @ts-expect-error a misspelt task option (timeoutMs) does not compile
        await req.fanout.all({ a: { run: () => 1, timeoutMS: 5 } });
      }
      res.json({ n, s, u, wrong, inBudget: req.fanout.remainingMs() > 0 && req.fanout.deadline > Date.now() });
    } catch (error) {
      next(error);
    }
  });

  app.get('/settle', async (req, res) => {
    const out = await req.fanout.settle({ x: () => 'x', y: { run: (): number => { throw new Error('no'); }, fallback: 0 } });
    const x: Settled<string> = out.x;
    const y: number | undefined = out.y.value;
    const timings: TaskTiming[] = req.fanout.timings();
    res.json({ x: x.status, xv: x.value, y: out.y.status, yv: y, timings: timings.map((t) => t.name + ':' + t.status) });
  });

  app.get('/budget', budget(3000), (req, res) => {
    res.json({ long: req.fanout.remainingMs() > 2000 });
  });

  app.get('/run', async (req, res) => {
    const left: number = await req.fanout.run(({ remainingMs }) => remainingMs(), 'left');
    res.json({ positive: left > 0, aborted: req.fanout.signal.aborted });
  });

  app.get('/worker', async (req, res) => {
    const f: number = await req.fanout.worker('fib', [20], { timeoutMs: 1500 });
    const data = new Uint8Array([1, 2, 3, 4]);
    const transfer: Transferable[] = [data.buffer];
    const total: number = await req.fanout.worker('sum', [data.buffer], { transfer });
    const { g } = await req.fanout.all({ g: ({ worker }) => worker('fib', [10]) });
    const typed: number = g;
    if (req.query['never'] !== undefined) {
      // @ts-expect-error fib takes a number
      await req.fanout.worker('fib', ['20']);
      // @ts-expect-error no such method
      await req.fanout.worker('fob', [20]);
    }
    res.json({ f, total, moved: data.byteLength === 0, typed });
  });

  app.get('/fail', (req, _res, next) => {
    req.fanout.all({ down: () => Promise.reject(new Error('secret')) }).catch(next);
  });

  const onError: ErrorRequestHandler = (err, _req, res, next) => {
    if (!(err instanceof FanoutError)) return next(err);
    const classes = [BudgetExceededError, WorkerCrashedError, TaskFailedError, OverloadedError, ClientClosedError, SiblingFailedError, WorkerScriptError];
    const kind = classes.find((c) => err instanceof c)?.name ?? 'FanoutError';
    const retryAfter = err instanceof OverloadedError ? err.retryAfter : undefined;
    const why = err instanceof BudgetExceededError ? err.kind : undefined;
    res.status(err.status).json({ kind, status: err.statusCode, expose: err.expose, tasks: err.tasks, retryAfter, why });
  };
  app.use(onError);
  return { app, fo };
}

export async function main(): Promise<void> {
  const { app, fo } = createApp();
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const address = server.address();
  const base = 'http://127.0.0.1:' + (typeof address === 'object' && address ? address.port : 0);
  const answers: Record<string, unknown> = {};
  let timing: ServerTimings = {};
  for (const path of ['/gather', '/mapped', '/all', '/settle', '/budget', '/run', '/worker', '/fail']) {
    const res = await fetch(base + path);
    if (path === '/all') timing = parseServerTiming(res);
    answers[path] = { status: res.status, body: await res.json() };
  }
  const stats: FanoutStats = fo.stats();
  await new Promise((resolve) => server.close(resolve));
  await fo.close();
  const settled = stats.completed + stats.failed;
  const read = { c: timing['c']?.outcome, a: timing['a']?.outcome, total: (timing['total']?.ms ?? -1) >= 0 };
  console.log(JSON.stringify({ answers, settled, events: events.length, typo: typo(), exported, timing: read }));
}
`;

// The compiled consumer must answer exactly this, from either module system.
const EXPECTED = {
  answers: {
    '/gather': { status: 200, body: { a: 1, b: 'b' } },
    '/mapped': { status: 201, body: { length: 7 } },
    '/all': { status: 200, body: { n: 42, s: 'after 42', u: 'none', wrong: 'none', inBudget: true } },
    '/settle': {
      status: 200,
      body: { x: 'fulfilled', xv: 'x', y: 'rejected', yv: 0, timings: ['x:fulfilled', 'y:rejected'] },
    },
    '/budget': { status: 200, body: { long: true } },
    '/run': { status: 200, body: { positive: true, aborted: false } },
    '/worker': { status: 200, body: { f: 6765, total: 10, moved: true, typed: 55 } },
    '/fail': { status: 502, body: { kind: 'TaskFailedError', status: 502, expose: false, tasks: ['down'] } },
  },
  settled: 13,
  events: 13,
  typo: 'Unknown option `budgetMS`. Did you mean `budgetMs`?',
  exported: ['CallTooLargeError', 'DownstreamError', 'TaskSkippedError', 'WorkerArgumentsError'],
  timing: { c: 'fallback', a: 'fulfilled', total: true },
};

const WORKER = `const workerpool = require('workerpool');
const fib = (n) => (n < 2 ? n : fib(n - 1) + fib(n - 2));
workerpool.worker({ fib, sum: (buffer) => new Uint8Array(buffer).reduce((a, b) => a + b, 0) });
`;

// What a strict user's tsconfig.json holds; `skipLibCheck: false` is the point.
const STRICT = {
  target: 'ES2022',
  lib: ['ES2022'],
  strict: true,
  skipLibCheck: false,
  exactOptionalPropertyTypes: true,
  noUncheckedIndexedAccess: true,
  noImplicitOverride: true,
  isolatedModules: true,
  forceConsistentCasingInFileNames: true,
};
// `consumer` rewrites the import of Express for a project without `esModuleInterop`, as such code writes it.
const INTEROP_IMPORT = "import express, { type ErrorRequestHandler, type Express } from 'express';";
const REQUIRE_IMPORT = `import express = require('express');
type ErrorRequestHandler = express.ErrorRequestHandler;
type Express = express.Express;`;
const PROJECTS = [
  { dir: 'cjs', type: 'commonjs', module: 'node16', moduleResolution: 'node16', emit: true, ts: ['5.9', 7] },
  {
    dir: 'esm',
    type: 'module',
    module: 'nodenext',
    moduleResolution: 'nodenext',
    emit: true,
    ts: ['5.9', 7],
  },
  // The `main`/`types` fields, as TypeScript before `exports` support (and many tsconfigs today) read them,
  // with and without `esModuleInterop` (TypeScript 5's default for `module: commonjs` is without).
  {
    dir: 'cjs-node10',
    type: 'commonjs',
    module: 'commonjs',
    moduleResolution: 'node10',
    esModuleInterop: true,
    emit: false,
    ts: ['5.9'],
  },
  // TypeScript 7's way to a CommonJS build without node16: `module: commonjs` and its default resolution.
  { dir: 'cjs-commonjs', type: 'commonjs', module: 'commonjs', emit: false, ts: [7] },
  {
    dir: 'cjs-node10-no-interop',
    type: 'commonjs',
    module: 'commonjs',
    moduleResolution: 'node10',
    esModuleInterop: false,
    emit: false,
    ts: ['5.9'],
    consumer: (text) => text.replace(INTEROP_IMPORT, REQUIRE_IMPORT),
  },
];
if (!CONSUMER.includes(INTEROP_IMPORT))
  throw new Error('check-package: the consumer no longer imports express as expected');

/**
 * A fresh copy of the source: the files git tracks or would track (nothing ignored, so no `dist/` or `build/`),
 * with the repo's `node_modules` linked in. Packing it proves that `npm pack` on a fresh clone builds `dist/`.
 */
function cleanCopy() {
  const src = join(scratch, 'src');
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: root,
    encoding: 'utf8',
  });
  for (const file of listed.split('\0')) {
    if (file === '' || file.startsWith('node_modules') || !existsSync(join(root, file))) continue;
    cpSync(join(root, file), join(src, file), { recursive: true });
  }
  if (existsSync(join(src, 'dist'))) throw new Error('the clean copy has a dist/');
  symlinkSync(realpathSync(join(root, 'node_modules')), join(src, 'node_modules'), 'dir');
  return src;
}

try {
  const src = cleanCopy();
  // The `prepare` script's own output comes first on stdout; npm's JSON starts at the first line opening with `[`.
  const packOut = run('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: src });
  const packed = JSON.parse(packOut.slice(packOut.search(/^\[/m)))[0];
  const files = packed.files.map((f) => f.path);
  const stray = files.filter((f) => /^(__tests__|lib|bench|demo-server|scripts|examples)\//.test(f));
  if (stray.length) throw new Error(`the tarball ships files it should not: ${stray.join(', ')}`);
  for (const needed of [
    'dist/cjs/index.js',
    'dist/cjs/index.d.ts',
    'dist/esm/index.mjs',
    'dist/esm/index.d.mts',
    'dist/cjs/observe/prometheus.js',
    'dist/cjs/observe/prometheus.d.ts',
    'dist/esm/prometheus.mjs',
    'dist/esm/prometheus.d.mts',
    'dist/cjs/observe/otel.js',
    'dist/cjs/observe/otel.d.ts',
    'dist/esm/otel.mjs',
    'dist/esm/otel.d.mts',
  ]) {
    if (!files.includes(needed)) throw new Error(`the tarball lacks ${needed}: did \`prepare\` build dist/?`);
  }

  writeFileSync(join(scratch, 'package.json'), '{ "name": "scratch", "private": true }\n');
  const started = Date.now();
  npmInstall([`./${packed.filename}`, 'express@5', '@types/node@20', '@types/express@5', 'typescript@7']);
  const ts7 = installed('typescript');
  if (!ts7.startsWith('7.')) throw new Error(`typescript@7 installed ${ts7}`);
  console.log(`  installed ${packed.filename} and its dependencies in ${Date.now() - started} ms`);

  const probe = `typeof m.fanout === 'function' && typeof m.gather === 'function' && new m.OverloadedError(['x'], 'y').status === 503`;
  run('node', ['-e', `const m = require('express-fanout'); if (!(${probe})) process.exit(1)`]);
  run('node', [
    '--input-type=module',
    '-e',
    `import * as m from 'express-fanout'; import { fanout } from 'express-fanout'; const c = await import('node:module').then((x) => x.createRequire(import.meta.url)('express-fanout')); if (!(${probe}) || c.fanout !== fanout) process.exit(1)`,
  ]);
  console.log(`  ${files.length} files; require() and import give the same module`);

  // The integrations' subpaths: they load without their optional peers and say what to install when called;
  // with the peers installed they register metrics and trace, from require() and import alike.
  const fake = `{ observe: () => () => undefined, stats: () => ({}) }`;
  for (const [subpath, fn, peer] of [
    ['prometheus', 'prometheus', 'prom-client'],
    ['otel', 'otel', '@opentelemetry/api'],
  ]) {
    const call = `try { m.${fn}(${fake}); process.exit(2); } catch (e) { if (!e.message.includes('npm install ${peer}')) { console.error(e); process.exit(1); } }`;
    run('node', ['-e', `const m = require('express-fanout/${subpath}'); ${call}`]);
    run('node', ['--input-type=module', '-e', `import * as m from 'express-fanout/${subpath}'; ${call}`]);
  }
  npmInstall(['prom-client', '@opentelemetry/api']);
  const observed = `const fo = fanout(); const registry = new Registry(); prometheus(fo, { registry }); otel(fo, { roots: true }).remove(); const text = await registry.metrics(); await fo.close(); if (!text.includes('# TYPE fanout_task_duration_seconds histogram')) process.exit(1);`;
  run('node', [
    '-e',
    `const { fanout } = require('express-fanout'); const { prometheus } = require('express-fanout/prometheus'); const { otel } = require('express-fanout/otel'); const { Registry } = require('prom-client'); (async () => { ${observed} })().catch((e) => { console.error(e); process.exit(1); });`,
  ]);
  run('node', [
    '--input-type=module',
    '-e',
    `import { fanout } from 'express-fanout'; import { prometheus } from 'express-fanout/prometheus'; import { otel } from 'express-fanout/otel'; import { Registry } from 'prom-client'; ${observed}`,
  ]);
  console.log(
    '  express-fanout/prometheus and express-fanout/otel: load without their peers, work with them',
  );

  writeFileSync(join(scratch, 'worker.cjs'), WORKER);
  for (const p of PROJECTS) {
    const dir = join(scratch, p.dir);
    mkdirSync(dir);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: p.type }));
    writeFileSync(join(dir, 'app.ts'), p.consumer ? p.consumer(CONSUMER) : CONSUMER);
    const { module, moduleResolution, esModuleInterop } = p;
    const compilerOptions = {
      ...STRICT,
      module,
      moduleResolution,
      ...(esModuleInterop !== undefined && { esModuleInterop }),
    };
    // Each compiler writes its own output folder (`--outDir` below): they run side by side.
    if (!p.emit) compilerOptions.noEmit = true;
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions, files: ['app.ts'] }, null, 2),
    );
  }

  const failures = [];
  const matrix = [
    ['20', '4'],
    ['20', '5'],
    ['latest', '4'],
    ['latest', '5'],
  ];
  for (const [node, express] of quick ? matrix.slice(-1) : matrix) {
    npmInstall([`@types/node@${node}`, `@types/express@${express}`]);
    const versions = `@types/node ${installed('@types/node')}, @types/express ${installed('@types/express')}`;
    // The compiles side by side: each spends most of its time checking @types/node.
    const jobs = PROJECTS.flatMap((p) => p.ts.map((ts) => ({ p, ts })));
    const compiles = jobs.map(({ p, ts }) =>
      promisify(execFile)(
        process.execPath,
        [COMPILERS[ts], '-p', p.dir, ...(p.emit ? ['--outDir', join(p.dir, `out-${ts}`)] : [])],
        { cwd: scratch },
      ).then(
        () => null,
        (error) => error,
      ),
    );
    for (const [i, error] of (await Promise.all(compiles)).entries()) {
      const { p, ts } = jobs[i];
      const interop = p.esModuleInterop === false ? ', no esModuleInterop' : '';
      const label = `TypeScript ${ts === 7 ? ts7 : ts}, ${p.dir} (module ${p.module}${interop}), ${versions}`;
      console.log(`  strict TypeScript, skipLibCheck false: ${error ? 'FAILS' : 'compiles'}: ${label}`);
      if (error) failures.push(`${label}:\n${explain(error)}`);
    }
  }
  if (failures.length)
    throw new Error(`the shipped declarations fail a strict consumer:\n${failures.join('\n')}`);

  // The last compile's output, run: the declarations describe what the code does, in both module systems.
  for (const { p, ts } of PROJECTS.filter((x) => x.emit).flatMap((p) => p.ts.map((ts) => ({ p, ts })))) {
    const main = join(scratch, p.dir, `out-${ts}`, 'app.js');
    const load =
      p.type === 'module'
        ? `import(${JSON.stringify(main)}).then((m) => m.main())`
        : `require(${JSON.stringify(main)}).main()`;
    const out = JSON.parse(
      run(process.execPath, ['-e', `${load}.catch((e) => { console.error(e); process.exit(1); })`]),
    );
    if (JSON.stringify(out) !== JSON.stringify(EXPECTED)) {
      throw new Error(
        `the ${p.dir} consumer compiled by TypeScript ${ts} answered\n${JSON.stringify(out)}\ninstead of\n${JSON.stringify(EXPECTED)}`,
      );
    }
    console.log(`  the ${p.dir} consumer compiled by TypeScript ${ts} serves every route as expected`);
  }
} catch (error) {
  console.error(error.stdout !== undefined ? explain(error) : error.message);
  process.exitCode = 1;
} finally {
  if (keep) console.log(`  scratch project kept in ${scratch}`);
  else rmSync(scratch, { recursive: true, force: true });
}
