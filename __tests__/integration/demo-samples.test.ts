// The guides' samples of what the demo prints stay true to the demo: every ```console block marked
// `<!-- demo-sample … -->` in README.md and docs/*.md is run here, command by command, against a demo started in
// this process, and its sample output is compared with the answer by structure, not by its volatile numbers:
// a JSON line's keys (each object's, all of them, or some where the object shows a `…`) and an error's status, a
// header's Server-Timing entry names and outcomes, a metric's name and labels. The stats() field list of docs/observability.md is checked
// against fo.stats() the same way.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fanout } from 'express-fanout';
import { createDemo, type Demo } from '../../demo-server/demo';

const root = join(__dirname, '..', '..');

interface Command {
  file: string;
  line: number;
  command: string;
  path: string;
  headers: Record<string, string>;
  showHeaders: boolean;
  grep: string | undefined;
  output: string[];
}

/** The commands of every marked console block, with the lines each is shown to print. */
function samples(): Command[] {
  const files = ['README.md', ...readdirSync(join(root, 'docs')).map((name) => `docs/${name}`)].filter(
    (file) => file.endsWith('.md'),
  );
  const commands: Command[] = [];
  for (const file of files) {
    const lines = readFileSync(join(root, file), 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (!line.startsWith('<!-- demo-sample') || lines[i + 1] !== '```console') return;
      for (let j = i + 2; j < lines.length && lines[j] !== '```'; j++) {
        const text = lines[j]!;
        if (text.startsWith('$ ')) commands.push(parse(file, j + 1, text.slice(2)));
        else commands.at(-1)?.output.push(text);
      }
    });
  }
  return commands;
}

function parse(file: string, line: number, command: string): Command {
  const [curl = '', grep] = command.replace(/\s+#.*$/, '').split(/\s*\|\s*grep\s+/);
  const url = /'?localhost:3000(\/[^'\s]*)'?/.exec(curl);
  if (!curl.startsWith('curl ') || !url)
    throw new Error(`${file}:${line}: not a curl to localhost:3000: ${command}`);
  const headers: Record<string, string> = {};
  for (const [, name, value] of curl.matchAll(/-H '([^:]+):\s*([^']*)'/g))
    headers[name!.toLowerCase()] = value!;
  return {
    file,
    line,
    command,
    path: url[1]!,
    headers,
    showHeaders: /\s-\w*i/.test(curl),
    grep: grep?.replace(/^'(.*)'$/, '$1'),
    output: [],
  };
}

/** Every key of a JSON value, as dotted paths (`db.region`), arrays' items included. */
function keys(value: unknown, prefix = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((item) => keys(item, prefix));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, inner]) => [
    `${prefix}${key}`,
    ...keys(inner, `${prefix}${key}.`),
  ]);
}

const ELIDED = '…';

/** A sample JSON line, parsed: a `…` where an object's keys are left out becomes a key `…`. */
const parseSample = (line: string): unknown =>
  JSON.parse(line.replace(/([{,])…(?=[,}])/g, `$1"${ELIDED}":0`));

/**
 * Where a sample's shape differs from the answer's: an object of the sample has exactly the answer's keys, or,
 * where it shows a `…`, some of them; objects and arrays inside are compared the same way.
 */
function shapeProblems(sample: unknown, actual: unknown, at = '$'): string[] {
  if (Array.isArray(sample)) {
    if (!Array.isArray(actual)) return [`${at}: an array in the sample, ${typeof actual} in the answer`];
    return sample.length > 0 && actual.length > 0 ? shapeProblems(sample[0], actual[0], `${at}[0]`) : [];
  }
  if (sample === null || typeof sample !== 'object') return [];
  if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) {
    return [`${at}: an object in the sample, ${JSON.stringify(actual)} in the answer`];
  }
  const shown = Object.keys(sample).filter((key) => key !== ELIDED);
  const problems = shown
    .filter((key) => !(key in actual))
    .map((key) => `${at}.${key}: in the sample, not in the answer`);
  if (!(ELIDED in sample)) {
    problems.push(
      ...Object.keys(actual)
        .filter((key) => !shown.includes(key))
        .map((key) => `${at}.${key}: in the answer, not in the sample (or a … where keys are left out)`),
    );
  }
  for (const key of shown) {
    if (key in actual) {
      problems.push(
        ...shapeProblems(
          (sample as Record<string, unknown>)[key],
          (actual as Record<string, unknown>)[key],
          `${at}.${key}`,
        ),
      );
    }
  }
  return problems;
}

/** `name;dur=…;desc="outcome …"` entries as `name` or `name: outcome`. */
function timingEntries(header: string): string[] {
  return [...header.matchAll(/([^\s,;]+);dur=[\d.]+(?:;desc="([^"]*)")?/g)].map(([, name, desc]) => {
    const outcome = /^(fallback|timeout|failed|shed|skipped|aborted)\b/.exec(desc ?? '')?.[1];
    return outcome ? `${name}: ${outcome}` : name!;
  });
}

/** `metric{label="x",…}` with the label values kept for `task` and `outcome` (bucket bounds are fixed too). */
const metricShape = (line: string): string => line.split(' ')[0]!;

/**
 * The demo, started up to three times: its start-up warm-up gives the first worker call (a thread loading the
 * TypeScript worker script through tsx) the demo's 1000 ms budget, which a loaded machine sometimes misses.
 */
async function startDemo(dataDir: string): Promise<Demo> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await createDemo({ port: 0, dataDir, log: () => undefined });
    } catch (error) {
      if (attempt === 3 || !/warm-up request/.test(String(error))) throw error;
    }
  }
}

describe("the guides' samples of the demo's output", () => {
  const commands = samples();
  let dataDir: string;
  let demo: Demo;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'fanout-demo-samples-'));
    demo = await startDemo(dataDir);
  }, 120_000);
  afterAll(async () => {
    await demo?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }, 30_000);

  it('finds the marked samples', () => {
    expect(commands.map((c) => c.path)).toEqual(
      expect.arrayContaining(['/metrics', '/', '/budget', '/stats', '/cpu?n=40']),
    );
  });

  // In the order the guides show them: /metrics first counts the start-up's tasks, as its sample says.
  it.each(commands.map((c) => [`${c.file}:${c.line} ${c.command}`, c] as const))(
    '%s',
    async (_title, sample) => {
      const response = await fetch(`${demo.url}${sample.path}`, { headers: sample.headers });
      const body = await response.text();
      for (const line of sample.output) {
        if (line === '…' || line.trim() === '') continue;
        if (line.startsWith('{')) {
          expect(shapeProblems(parseSample(line), JSON.parse(body))).toEqual([]);
          // An error's status is part of the story the sample tells (a 504 at the deadline), not a number that
          // varies: it must be the answer's.
          const status = /"status":(\d{3})/.exec(line)?.[1];
          if (status !== undefined)
            expect({ status: response.status, body }).toMatchObject({ status: Number(status) });
        } else if (/^[\w-]+: /.test(line) && sample.showHeaders) {
          const name = line.slice(0, line.indexOf(':'));
          const value = response.headers.get(name) ?? '';
          expect(value).not.toBe('');
          if (name.toLowerCase() === 'server-timing') {
            expect(timingEntries(value)).toEqual(timingEntries(line));
          }
        } else {
          // A metric line of `/metrics | grep …`.
          const lines = body.split('\n').filter((l) => sample.grep === undefined || l.includes(sample.grep));
          expect(lines.map(metricShape)).toContain(metricShape(line));
        }
      }
    },
    30_000,
  );
});

describe('the stats() field list of docs/observability.md', () => {
  it('names every field of fo.stats(), nested ones included, and no other', async () => {
    const doc = readFileSync(join(root, 'docs', 'observability.md'), 'utf8');
    const list = /<!-- stats-fields[^>]*-->\n`fo\.stats\(\)` returns `(\{[^`]*\})`/.exec(doc)?.[1];
    expect(list).toBeDefined();
    // `{ running, workers: { busy } }` as dotted paths: running, workers, workers.busy.
    const shown: string[] = [];
    const path: string[] = [];
    for (const token of list!.match(/[\w]+:?|\{|\}/g) ?? []) {
      if (token === '{' || token === '}') {
        if (token === '}') path.pop();
        continue;
      }
      const name = token.replace(/:$/, '');
      shown.push([...path, name].join('.'));
      if (token.endsWith(':')) path.push(name);
    }
    const fo = fanout();
    try {
      // `transit` and `dependencies` are keyed by callee origin and dependency name: their keys are not fields.
      const actual = keys(fo.stats()).filter((key) => !/^(transit|dependencies)\./.test(key));
      expect(shown.sort()).toEqual(actual.sort());
    } finally {
      await fo.close();
    }
  });
});
