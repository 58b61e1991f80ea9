// Builds dist/: CommonJS + declarations with tsc, then a thin ES module wrapper over the same CommonJS code.
// One implementation for both loaders means one scheduler and one set of error classes per process
// (no dual-package hazard: `instanceof OverloadedError` holds whether the app used `import` or `require`).
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// `--out <dir>` builds elsewhere (the dist smoke test builds into build/ so it never races `dist/`).
const outAt = process.argv.indexOf('--out');
const dist = outAt > 0 ? resolve(process.argv[outAt + 1] ?? '') : join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [
    join(root, 'node_modules/typescript/bin/tsc'),
    '-p',
    join(root, 'tsconfig.build.json'),
    '--outDir',
    join(dist, 'cjs'),
  ],
  {
    stdio: 'inherit',
  },
);

// The entry points: the package, and its optional integrations' subpath exports (each loads its peer
// dependency only when called, so requiring the wrapper's CommonJS file to list its names needs none).
const ENTRIES = [
  ['index', 'index'],
  ['prometheus', 'observe/prometheus'],
  ['otel', 'observe/otel'],
];
const require = createRequire(import.meta.url);
mkdirSync(join(dist, 'esm'), { recursive: true });
const built = [];
for (const [entry, cjsPath] of ENTRIES) {
  const names = Object.keys(require(join(dist, `cjs/${cjsPath}.js`))).filter((n) => n !== '__esModule');
  writeFileSync(
    join(dist, `esm/${entry}.mjs`),
    `import cjs from '../cjs/${cjsPath}.js';\nexport const { ${names.join(', ')} } = cjs;\n`,
  );
  writeFileSync(join(dist, `esm/${entry}.d.mts`), `export * from '../cjs/${cjsPath}.js';\n`);
  built.push(`${entry}: ${names.join(', ')}`);
}
console.log(
  `built ${dist === join(root, 'dist') ? 'dist/' : dist} (cjs + esm wrappers): ${built.join('; ')}`,
);
