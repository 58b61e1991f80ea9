// Packs the package as npm would publish it, installs the tarball into a scratch project, and loads it the
// three ways users do: require(), import, and a strict TypeScript compile against the shipped .d.ts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const scratch = mkdtempSync(join(tmpdir(), 'express-fanout-pack-'));
const run = (cmd, args, opts = {}) =>
  execFileSync(cmd, args, { cwd: scratch, stdio: 'pipe', encoding: 'utf8', ...opts });
try {
  const packed = JSON.parse(run('npm', ['pack', root, '--json', '--pack-destination', scratch]))[0];
  const files = packed.files.map((f) => f.path);
  const stray = files.filter((f) => /^(__tests__|lib|bench|demo-server|scripts)\//.test(f));
  if (stray.length) throw new Error(`the tarball ships files it should not: ${stray.join(', ')}`);
  for (const needed of [
    'dist/cjs/index.js',
    'dist/cjs/index.d.ts',
    'dist/esm/index.mjs',
    'dist/esm/index.d.mts',
  ]) {
    if (!files.includes(needed)) throw new Error(`the tarball lacks ${needed}`);
  }
  const modules = join(scratch, 'node_modules');
  mkdirSync(join(modules, 'express-fanout'), { recursive: true });
  run('tar', ['-xzf', packed.filename, '-C', join(modules, 'express-fanout'), '--strip-components=1']);
  // Dependencies come from the repository's own install: no registry needed.
  for (const dep of readdirSync(join(root, 'node_modules'))) {
    if (dep === '.bin' || dep === 'express-fanout') continue;
    symlinkSync(join(root, 'node_modules', dep), join(modules, dep));
  }
  writeFileSync(join(scratch, 'package.json'), '{ "name": "scratch", "private": true }');
  const probe = `typeof m.fanout === 'function' && typeof m.gather === 'function' && new m.OverloadedError(['x'], 'y').status === 503`;
  run('node', ['-e', `const m = require('express-fanout'); if (!(${probe})) process.exit(1)`]);
  run('node', [
    '--input-type=module',
    '-e',
    `import * as m from 'express-fanout'; import { fanout } from 'express-fanout'; const c = await import('node:module').then((x) => x.createRequire(import.meta.url)('express-fanout')); if (!(${probe}) || c.fanout !== fanout) process.exit(1)`,
  ]);
  writeFileSync(
    join(scratch, 'app.ts'),
    `import express from 'express';
import { fanout, gather, OverloadedError, type FanoutStats } from 'express-fanout';
const app = express();
const fo = fanout({ budgetMs: 300 });
app.use(fo);
app.get('/', gather({ a: () => 1, b: { run: async ({ signal }) => (signal.aborted ? '' : 'b'), fallback: null } }));
app.get('/x', async (req, res) => {
  const { a } = await req.fanout.all({ a: async () => 42 });
  const n: number = a;
  res.json({ n, left: req.fanout.remainingMs() });
});
const s: FanoutStats = fo.stats();
export { s, OverloadedError };
`,
  );
  for (const [label, module, resolution] of [
    ['CommonJS', 'commonjs', 'node10'],
    ['node16', 'node16', 'node16'],
  ]) {
    run(process.execPath, [
      join(root, 'node_modules/typescript/bin/tsc'),
      '--noEmit',
      '--strict',
      '--esModuleInterop',
      // Our .d.ts files are checked by the strict compile of app.ts; other packages' are not ours to check.
      '--skipLibCheck',
      '--module',
      module,
      '--moduleResolution',
      resolution,
      '--types',
      'node',
      '--typeRoots',
      join(root, 'node_modules/@types'),
      'app.ts',
    ]);
    console.log(`  TypeScript (${label} resolution) compiles against the shipped types`);
  }
  console.log(`  ${packed.filename}: ${files.length} files; require() and import give the same module`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
