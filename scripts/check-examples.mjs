// Keeps the code examples of README.md and the guides in docs/ and the files under examples/ (which CI
// type-checks, and whose quick start a test runs) the same text. In README.md and docs/*.md every ```ts or ```js
// block is preceded by a marker naming its file:
//   <!-- example: examples/quick-start.ts -->          the whole file
//   <!-- example: examples/gather.ts#pitch -->         the lines between `// #region pitch` and `// #endregion`
// Fails, naming the first differing line, when a block differs from its file, a block has no marker, or an
// example file is shown nowhere. `--write` copies the files into the markdown instead.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const docs = existsSync(join(root, 'docs'))
  ? readdirSync(join(root, 'docs'))
      .filter((name) => name.endsWith('.md'))
      .sort()
      .map((name) => `docs/${name}`)
  : [];
const markdown = ['README.md', ...docs];
const write = process.argv.includes('--write');
const MARKER = /^<!-- example: (examples\/[\w./-]+?)(?:#([\w-]+))? -->$/;
const FENCE = /^```(\w*)$/;

function source(file, region) {
  const text = readFileSync(join(root, file), 'utf8').replace(/\n+$/, '');
  if (region === undefined) return text;
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === `// #region ${region}`);
  const end = lines.findIndex((l, i) => i > start && l.trim() === '// #endregion');
  if (start < 0 || end < 0) throw new Error(`${file} has no region \`${region}\``);
  return lines.slice(start + 1, end).join('\n');
}

const problems = [];
const shown = new Set();
let blocks = 0;
for (const doc of markdown) {
  const lines = readFileSync(join(root, doc), 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const fence = FENCE.exec(lines[i]);
    if (!fence) continue;
    const close = lines.findIndex((l, j) => j > i && l === '```');
    if (close < 0) {
      problems.push(`${doc}:${i + 1}: a code block that is never closed`);
      break;
    }
    let above = i - 1;
    while (above >= 0 && lines[above].trim() === '') above--;
    const marker = above >= 0 ? MARKER.exec(lines[above]) : null;
    if (!marker) {
      if (['ts', 'js', 'typescript', 'javascript'].includes(fence[1])) {
        problems.push(
          `${doc}:${i + 1}: a \`${fence[1]}\` block without <!-- example: examples/… --> above it`,
        );
      }
      i = close;
      continue;
    }
    const [, file, region] = marker;
    blocks++;
    shown.add(file);
    let expected;
    try {
      expected = source(file, region);
    } catch (error) {
      problems.push(`${doc}:${above + 1}: ${error.code === 'ENOENT' ? `no file ${file}` : error.message}`);
      i = close;
      continue;
    }
    const actual = lines.slice(i + 1, close).join('\n');
    if (actual !== expected) {
      if (write) {
        lines.splice(i + 1, close - i - 1, ...expected.split('\n'));
        i += expected.split('\n').length + 1;
        continue;
      }
      const want = expected.split('\n');
      const got = actual.split('\n');
      const at = want.findIndex((l, k) => l !== got[k]);
      const k = at < 0 ? want.length : at;
      problems.push(
        `${doc}:${i + 2 + k}: differs from ${file}${region ? `#${region}` : ''} line ${k + 1}:\n` +
          `    ${doc}: ${got[k] ?? '(block ends)'}\n    file:   ${want[k] ?? '(file ends)'}`,
      );
    }
    i = close;
  }
  if (write) writeFileSync(join(root, doc), lines.join('\n'));
}

const examples = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? examples(join(dir, entry.name))
      : /\.(ts|js|mjs|cjs)$/.test(entry.name)
        ? [relative(root, join(dir, entry.name))]
        : [],
  );
for (const file of examples(join(root, 'examples'))) {
  if (!shown.has(file))
    problems.push(`${file} is shown nowhere in README.md or docs/*.md (add a block with its marker)`);
}

if (problems.length) {
  console.error(`Code blocks out of step with examples/:\n${problems.join('\n')}`);
  console.error('Edit the file under examples/ and run `node scripts/check-examples.mjs --write`.');
  process.exitCode = 1;
} else {
  console.log(
    `README examples: ${blocks} blocks in ${markdown.length} files, each the same as its file under examples/`,
  );
}
