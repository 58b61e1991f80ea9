// `npm run bench [-- --quick] [-- --only story,overhead] [-- --strict]`: runs the five scenarios, prints progress
// and the tables, and writes bench/results/latest.{json,md,svg} (a --quick run writes quick.*, a run of some
// scenarios only *-partial.*, so neither replaces the full results). Exits 1 when the harness itself fails (and,
// with --strict, when a target does not hold); otherwise a target that does not hold is reported, not turned
// into an exit code.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadAverage, machine } from './harness/machine';
import { say, secondsSinceStart } from './harness/progress';
import { benchDir, findPython, killServers, rootDir } from './harness/server-process';
import { allTargets, renderMarkdown, renderText, type Report, verdict } from './report/markdown';
import { renderSvg } from './report/svg';
import { renderTraceSvg } from './report/trace-svg';
import { blockingScenario } from './scenarios/blocking';
import { mixedScenario } from './scenarios/mixed';
import { heavyTailScenario } from './scenarios/heavy-tail';
import { hotPathScenario } from './scenarios/hot-path';
import { tailScenario } from './scenarios/tail';
import { overheadScenario } from './scenarios/overhead';
import { overloadScenario } from './scenarios/overload';
import { PRESSURE_SCENARIOS, pressureSteps } from './scenarios/pressure-steps';
import { fullPlan, quickPlan } from './scenarios/plan';
import { storyScenarios } from './scenarios/story';
import type { Environment, ScenarioResult } from './scenarios/types';
import { packagePaths } from './scenarios/variant';

const SCENARIOS = [
  'story',
  'overhead',
  'heavy-tail',
  'overload',
  'blocking',
  'mixed',
  'tail',
  ...PRESSURE_SCENARIOS,
  'hot-path',
] as const;
type ScenarioId = (typeof SCENARIOS)[number];

const USAGE = `usage: npm run bench [-- --quick] [-- --only ${SCENARIOS.join(',')}] [-- --strict]
  --quick   a short run (under two minutes) that proves the harness; writes bench/results/quick.*
  --only    run only these scenarios (comma-separated); writes *-partial.*
  --strict  exit 1 when a target does not hold
  BENCH_PYTHON=/path/to/python3 picks the interpreter of the FastAPI peer (default: python3, then /usr/bin/python3)`;

function parseArgs(argv: string[]): {
  quick: boolean;
  strict: boolean;
  only: Set<ScenarioId>;
  partial: boolean;
} {
  let quick = false;
  let strict = false;
  let only = new Set<ScenarioId>(SCENARIOS);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--quick') quick = true;
    else if (arg === '--strict') strict = true;
    else if (arg === '--only' || arg.startsWith('--only=')) {
      const list = arg.includes('=') ? arg.slice('--only='.length) : argv[++i];
      const ids = (list ?? '').split(',').filter(Boolean);
      const unknown = ids.filter((id) => !SCENARIOS.includes(id as ScenarioId));
      if (ids.length === 0 || unknown.length) {
        throw new Error(
          `Expected --only to list scenarios among ${SCENARIOS.join(', ')}, got \`${list ?? ''}\``,
        );
      }
      only = new Set(ids as ScenarioId[]);
    } else if (arg === '--help' || arg === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`Unknown argument \`${arg}\`\n${USAGE}`);
  }
  const partial = only.size < SCENARIOS.length;
  // The pressure scenarios take minutes: a --quick run (CI's) leaves them out unless --only names them.
  if (quick && !partial) {
    only = new Set(SCENARIOS.filter((id) => !(PRESSURE_SCENARIOS as readonly string[]).includes(id)));
  }
  return { quick, strict, only, partial };
}

// A safety net over the per-load bounds: past it, the scenarios not yet started are skipped, with a line saying so.
const TIME_CAP_S = { quick: 170, full: 20 * 60 };

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const plan = args.quick ? quickPlan : fullPlan;
  const packageBuilt = ['cjs/index.js', 'esm/index.mjs'].every((file) =>
    existsSync(join(rootDir, 'dist', file)),
  );
  const python = findPython();
  const env: Environment = { packageBuilt, python };
  const m = machine();

  say(`express-fanout benchmark, ${args.quick ? 'quick run (--quick)' : 'full run'}`);
  say(
    `machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}, load average ${m.loadAverageAtStart.join(' ')}`,
  );
  say(
    `package: express-fanout ${m.packageVersion} (${m.commit}); express ${m.express}; autocannon ${m.autocannon}`,
  );
  if (!packageBuilt)
    say("dist/ is not built: the package's variants are skipped (run `npm run build` first)");
  say(
    'missing' in python
      ? `Python FastAPI peer: skipped, ${python.missing} (Debian: apt-get install python3-fastapi python3-uvicorn)`
      : `Python FastAPI peer: ${python.python} (${python.versions})`,
  );

  const scenarios: ScenarioResult[] = [];
  const skippedScenarios: Report['skippedScenarios'] = [];
  let harnessFailed = false;
  const cap = args.quick ? TIME_CAP_S.quick : TIME_CAP_S.full;
  const steps: [ScenarioId, string, () => Promise<ScenarioResult | ScenarioResult[]>][] = [
    ['story', "1. The story's endpoint", () => storyScenarios(plan, env)],
    ['overhead', '2. Overhead', () => overheadScenario(plan, env)],
    ['heavy-tail', '3. Heavy tail', () => heavyTailScenario(plan, env)],
    ['overload', '4. Overload', () => overloadScenario(plan, env)],
    ['blocking', '5. Blocking work', () => blockingScenario(plan, env)],
    ['mixed', '6. Mixed IO and CPU', () => mixedScenario(plan, env)],
    ['tail', '7. Winning the tail back', () => tailScenario(plan, env)],
    ['hot-path', '8. Hot path and cost growth (no HTTP)', () => hotPathScenario(plan, env)],
    ...pressureSteps(plan, env),
  ];
  for (const [id, title, run] of steps) {
    if (!args.only.has(id)) continue;
    if (secondsSinceStart() > cap) {
      const reason = `the run passed its ${cap} s time cap before it started`;
      say(`${title}: skipped, ${reason}`);
      skippedScenarios.push({ title, reason });
      harnessFailed = true;
      continue;
    }
    say(`${title}`);
    try {
      const result = await run();
      for (const s of [result].flat()) {
        scenarios.push(s);
        console.log(`\n${s.title}\n${renderText(s)}\n`);
        for (const t of s.targets) say(`  ${verdict(t).padEnd(12)} ${t.variant}: ${t.target}: ${t.measured}`);
      }
    } catch (error) {
      harnessFailed = true;
      const reason = `the harness failed: ${(error as Error).stack ?? String(error)}`;
      say(`${title}: ${reason}`);
      skippedScenarios.push({ title, reason: reason.split('\n')[0]! });
    }
  }

  m.loadAverageAtEnd = loadAverage();
  const report: Report = {
    machine: m,
    quick: args.quick,
    durationS: secondsSinceStart(),
    packagePaths: [...packagePaths].map((p) => p.replace(`${rootDir}/`, '')),
    python: 'missing' in python ? `skipped: ${python.missing}` : `${python.python} (${python.versions})`,
    scenarios,
    skippedScenarios,
  };
  // A --quick run never replaces the full results, nor does a run of some scenarios only.
  const name = `${args.quick ? 'quick' : 'latest'}${args.partial ? '-partial' : ''}`;
  const dir = join(benchDir, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, `${name}.json`),
    `${JSON.stringify({ ...report, targets: allTargets(report) }, null, 2)}\n`,
  );
  writeFileSync(join(dir, `${name}.md`), renderMarkdown(report, `${name}.svg`));
  writeFileSync(join(dir, `${name}.svg`), renderSvg(m, scenarios, args.quick));
  for (const s of scenarios) {
    if (s.traces) writeFileSync(join(dir, `${name}-${s.id}-trace.svg`), renderTraceSvg(s.traces));
  }

  const targets = allTargets(report);
  const failing = targets.filter((t) => t.holds === false);
  say(
    `targets: ${targets.filter((t) => t.holds).length} hold, ${failing.length} fail, ` +
      `${targets.filter((t) => t.holds === null).length} not measured`,
  );
  for (const t of failing) say(`  FAILS  ${t.scenario} · ${t.variant}: ${t.target}: ${t.measured}`);
  say(`wrote bench/results/${name}.json, ${name}.md, ${name}.svg in ${Math.round(report.durationS)} s`);
  return harnessFailed || (args.strict && failing.length > 0) ? 1 : 0;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killServers();
    process.exit(130);
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    killServers();
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  },
);
