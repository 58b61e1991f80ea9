// The built package, as users load it: `require()` of the CommonJS build and `import` of the ES module
// wrapper, each in a process of its own (no jest module system in between), serving a real request.
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = join(__dirname, '..', '..');
const out = join(root, 'build', `dist-smoke-${process.pid}`);

// What both loaders must give: the public names, working classes, and a middleware that answers a request.
const probe = (load: string) => `
${load}
const http = require('node:http');
const express = require('express');
const names = Object.keys(m).filter((n) => n !== 'default' && n !== '__esModule').sort();
const app = express();
const fo = m.fanout({ budgetMs: 200 });
app.use(fo);
app.get('/', m.gather({ a: async () => 1, b: { run: ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))), fallback: 'late' } }));
const server = app.listen(0, '127.0.0.1', async () => {
  const res = await fetch('http://127.0.0.1:' + server.address().port + '/');
  const body = await res.json();
  server.close();
  await fo.close();
  console.log(JSON.stringify({
    names,
    status: res.status,
    body,
    timing: /^a;dur=[\\d.]+, b;dur=[\\d.]+;desc="fallback", total;dur=[\\d.]+$/.test(res.headers.get('server-timing')),
    overloaded: new m.OverloadedError(['x'], 'full').status,
    isError: new m.BudgetExceededError(['x'], 5) instanceof m.FanoutError,
  }));
});
`;

const EXPECTED = {
  names: [
    'BudgetExceededError',
    'CallTooLargeError',
    'ClientClosedError',
    'DownstreamError',
    'FanoutError',
    'MemoryLimitStore',
    'OverloadedError',
    'RedisLimitStore',
    'SiblingFailedError',
    'TaskFailedError',
    'TaskSkippedError',
    'WorkerArgumentsError',
    'WorkerCrashedError',
    'WorkerScriptError',
    'budget',
    'drainable',
    'fanout',
    'gather',
    'parseServerTiming',
  ],
  status: 200,
  body: { a: 1, b: 'late' },
  timing: true,
  overloaded: 503,
  isError: true,
};

describe('the built package', () => {
  beforeAll(async () => {
    await run(process.execPath, [join(root, 'scripts', 'build.mjs'), '--out', out], { cwd: root });
  }, 120_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('loads with require() and serves a request', async () => {
    const cjs = join(out, 'cjs', 'index.js');
    const { stdout } = await run(
      process.execPath,
      ['-e', probe(`const m = require(${JSON.stringify(cjs)});`)],
      {
        cwd: root,
      },
    );
    expect(JSON.parse(stdout)).toEqual(EXPECTED);
  });

  it('loads with import, with the same classes as require() (one implementation)', async () => {
    const esm = join(out, 'esm', 'index.mjs');
    const cjs = join(out, 'cjs', 'index.js');
    const load = `
import * as m from ${JSON.stringify(esm)};
import { createRequire } from 'node:module';
const require = createRequire(${JSON.stringify(join(root, 'package.json'))});
if (require(${JSON.stringify(cjs)}).OverloadedError !== m.OverloadedError) throw new Error('two copies of the classes');`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', probe(load)], { cwd: root });
    expect(JSON.parse(stdout)).toEqual(EXPECTED);
  });
});
