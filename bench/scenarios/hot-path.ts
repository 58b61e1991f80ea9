// Scenario 8, the hot path without HTTP: the package's own CPU and bytes a request against a bare Promise.all, at
// three tasks (functions, spec objects, Server-Timing on) and as the tasks a request grow from 1 to 1000. It runs
// bench/micro/run.ts in a process of its own on the built dist/, and turns its JSON into two result sections.
import { fork } from 'node:child_process';
import { join } from 'node:path';
import type { HotPathResult } from '../micro/hot-path';
import type { MicroReport } from '../micro/run';
import { say } from '../harness/progress';
import { benchDir, rootDir } from '../harness/server-process';
import { check, fmt } from './format';
import type { Plan } from './plan';
import type { Environment, ScenarioResult, VariantRun } from './types';

const us = (v: number): string =>
  Number.isFinite(v) ? (Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)) : '—';
const bytes = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');
const range = (values: number[]): string =>
  values.length ? `${fmt.ratio(Math.min(...values))} – ${fmt.ratio(Math.max(...values))}` : '—';

/** A row of the hot-path table: the baseline side of a measurement. */
const baseRow = (label: string, r: HotPathResult | undefined): string[] => [
  label,
  us(r?.base.usPerOp ?? NaN),
  '1.000×',
  '',
  '',
  bytes(r?.base.bytesPerOp ?? NaN),
  '',
];

/** A row of the hot-path table: the package's side of a measurement, against its baseline in the same rounds. */
const packageRow = (label: string, r: HotPathResult): string[] => [
  label,
  us(r.fanout.usPerOp),
  fmt.ratio(r.opsRatio),
  range(r.roundRatios),
  us(r.extraUsPerOp),
  bytes(r.fanout.bytesPerOp),
  fmt.ratio(r.bytesRatio),
];

function runMicro(quick: boolean): Promise<MicroReport> {
  return new Promise((resolve, reject) => {
    const child = fork(join(benchDir, 'micro', 'run.ts'), quick ? ['--quick'] : [], {
      cwd: rootDir,
      execArgv: ['--require', 'tsx/cjs'],
      env: { ...process.env, TSX_TSCONFIG_PATH: join(benchDir, 'tsconfig.run.json') },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    let out = '';
    let err = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`bench/micro/run.ts exited with ${code}: ${err.trim()}`));
      try {
        resolve(JSON.parse(out) as MicroReport);
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  });
}

export async function hotPathScenario(plan: Plan, env: Environment): Promise<ScenarioResult[]> {
  const pkg: VariantRun = { id: 'fanout-all', label: 'req.fanout.all, defaults', kind: 'package' };
  const base: VariantRun = { id: 'promise-all', label: 'Promise.all', kind: 'baseline' };
  if (!env.packageBuilt) {
    pkg.skipped = 'dist/ is not built (npm run build)';
    say(`  - hot path: skipped, ${pkg.skipped}`);
  }
  let report: MicroReport | undefined;
  if (!pkg.skipped) {
    say(`  hot path · in-process microbenchmark (${plan.quick ? 'quick' : 'full'}), about a minute`);
    report = await runMicro(plan.quick);
  }
  return [hotPathSection(report, pkg, base), growthSection(report, pkg)];
}

function hotPathSection(report: MicroReport | undefined, pkg: VariantRun, base: VariantRun): ScenarioResult {
  const rows: [string, HotPathResult | undefined][] = [
    ['req.fanout.all, tasks as functions', report?.three],
    ['req.fanout.all, tasks as `{ run }` specs defined once', report?.threeSpecs],
    ['req.fanout.all + Server-Timing', report?.threeServerTiming],
  ];
  const viaExpress = report?.threeExpress;
  const three = report?.three;
  return {
    id: 'hot-path',
    title: 'Hot path (no HTTP)',
    setup:
      'The middleware and one `req.fanout.all()` of three instant tasks (`async () => value`) on fake request and ' +
      'response objects, one request at a time (as over HTTP, where a request of instant tasks ends within its ' +
      'socket callback), against a bare `Promise.all` of the same tasks; the two take turns in alternating rounds. ' +
      'CPU is the main thread’s own (Linux schedstat: no helper threads, no time lost to a busy neighbour); bytes ' +
      'are what the JS heap allocated (used heap growth plus what each collection reclaimed). `fanout({ budgetMs: ' +
      '1000, serverTiming: false })`: the defaults, Server-Timing off as in production.',
    variants: [base, pkg],
    tables: [
      {
        columns: [
          'variant',
          'CPU µs / request',
          'ratio of Promise.all’s rate',
          'ratio range over rounds',
          'extra µs / request',
          'bytes / request',
          'bytes ratio',
        ],
        rows: [
          baseRow('Promise.all', three),
          ...rows.map(([label, r]) =>
            r
              ? packageRow(label, r)
              : [label, pkg.skipped ? `skipped: ${pkg.skipped}` : 'not run', '', '', '', '', ''],
          ),
          ...(viaExpress
            ? [
                baseRow('Promise.all, through Express (real req/res, no sockets)', viaExpress),
                packageRow('req.fanout.all, through Express (real req/res, no sockets)', viaExpress),
              ]
            : []),
        ],
      },
    ],
    targets: [
      check(
        'hot-path',
        pkg,
        'three instant tasks add ≤ 3.5 µs a request (5 % of Express’s ~70 µs request: the ≥ 0.95× of the HTTP overhead scenario)',
        three?.extraUsPerOp,
        (v) => v <= 3.5,
        (v) =>
          `${us(v)} µs (Promise.all ${us(three!.base.usPerOp)} µs, all() ${us(three!.fanout.usPerOp)} µs)`,
      ),
    ],
    chart: {
      title: 'Hot path: CPU ms a request, 3 instant tasks, no HTTP',
      rows: [
        ...(three
          ? [
              {
                label: 'Promise.all',
                p50: three.base.usPerOp / 1000,
                p99: three.base.usPerOp / 1000,
                note: `${us(three.base.usPerOp)} µs`,
                kind: 'baseline' as const,
              },
            ]
          : []),
        ...rows
          .filter((row): row is [string, HotPathResult] => row[1] !== undefined)
          .map(([label, r]) => ({
            label,
            p50: r.fanout.usPerOp / 1000,
            p99: r.fanout.usPerOp / 1000,
            note: `${us(r.fanout.usPerOp)} µs`,
            kind: 'package' as const,
          })),
      ],
    },
    notes: [
      'In-process numbers: no socket, no HTTP parsing, no Express router. Over HTTP Express itself costs ~70 µs a ' +
        'request on this machine, so the ratio here is far below the HTTP overhead scenario’s; the extra µs are ' +
        'what the package adds in either.',
      'The last two rows run both sides through Express (`app.handle`) on real `IncomingMessage` and ' +
        '`ServerResponse` objects: Express switches their prototypes, which gives each a hidden class of its own, ' +
        'so whatever the middleware adds to them costs what it does in a server; the fake objects above hide that. ' +
        'The package side also pays one more Express layer (the middleware itself).',
    ],
  };
}

function growthSection(report: MicroReport | undefined, pkg: VariantRun): ScenarioResult {
  const growth = report?.growth ?? [];
  const at = (n: number): HotPathResult | undefined => growth.find((g) => g.tasks === n);
  return {
    id: 'cost-growth',
    title: 'Cost growth (no HTTP)',
    setup:
      'As the hot path above, with N instant tasks a request for N = 1 … 1000: `fanout({ budgetMs: 1000, ' +
      'serverTiming: false, perRequest: 100000, maxQueue: 100000 })` (the defaults, with the per-request cap and ' +
      'the queue bound out of the way), against `Promise.all` of the same N tasks and an object of their results.',
    variants: [pkg],
    tables: [
      {
        columns: [
          'tasks a request',
          'Promise.all µs / request',
          'all() µs / request',
          'ratio of Promise.all’s rate',
          'extra µs / request',
          'extra µs / task',
          'extra bytes / task',
        ],
        rows: growth.map((g) => [
          String(g.tasks),
          us(g.base.usPerOp),
          us(g.fanout.usPerOp),
          fmt.ratio(g.opsRatio),
          us(g.extraUsPerOp),
          us(g.extraUsPerTask),
          bytes(g.extraBytesPerOp / g.tasks),
        ]),
      },
    ],
    targets: [
      check(
        'cost-growth',
        pkg,
        'one task a request adds ≤ 5 µs',
        at(1)?.extraUsPerOp,
        (v) => v <= 5,
        (v) => `${us(v)} µs`,
      ),
      check(
        'cost-growth',
        pkg,
        '1000 tasks a request add ≤ 0.3 µs a task',
        at(1000)?.extraUsPerTask,
        (v) => v <= 0.3,
        (v) => `${us(v)} µs a task`,
      ),
    ],
    chart: {
      title: 'Cost growth: extra CPU ms a request over Promise.all, no HTTP',
      rows: growth.map((g) => ({
        label: `${g.tasks} task${g.tasks === 1 ? '' : 's'}`,
        p50: g.extraUsPerOp / 1000,
        p99: g.extraUsPerOp / 1000,
        note: `${us(g.extraUsPerTask)} µs a task`,
        kind: 'package' as const,
      })),
    },
    notes: [
      'Flat means the extra µs a task stays about the same from 10 tasks on (below that the fixed cost a request ' +
        'dominates).',
    ],
  };
}
