// Scenario 1, the story's endpoint: dependencies of 100, 200 and 300 ms, at 1 and at 100 connections, against
// the physical limit (latency = the slowest dependency; throughput = connections / 0.3 s).
import { say } from '../harness/progress';
import { story } from '../servers/params';
import { besides, check, fmt, skippedCell } from './format';
import type { Plan } from './plan';
import type { ChartRow, Environment, Kind, ScenarioResult, Target, VariantRun } from './types';
import { load, skipPackage, type Start, summary, withServer } from './variant';

export async function storyScenarios(plan: Plan, env: Environment): Promise<ScenarioResult[]> {
  const slowest = Math.max(...story.dependenciesMs);
  const sum = story.dependenciesMs.reduce((a, b) => a + b, 0);
  const cfg = `fanout({ concurrency: ${story.concurrency} })`;
  const variants: { id: string; label: string; kind: Kind; how: Start | 'python'; config?: string }[] = [
    {
      id: 'sequential',
      label: 'sequential awaits',
      kind: 'baseline',
      how: { node: { file: 'story', variant: 'sequential' } },
    },
    {
      id: 'promise-all',
      label: 'Promise.all',
      kind: 'baseline',
      how: { node: { file: 'story', variant: 'promise-all' } },
    },
    {
      id: 'fanout-all',
      label: 'req.fanout.all',
      kind: 'package',
      config: cfg,
      how: { node: { file: 'story', variant: 'fanout-all' } },
    },
    {
      id: 'gather',
      label: 'gather',
      kind: 'package',
      config: cfg,
      how: { node: { file: 'story', variant: 'gather' } },
    },
    { id: 'fastapi', label: 'FastAPI + ThreadPoolExecutor (uvicorn)', kind: 'peer', how: 'python' },
  ];
  const at1: VariantRun[] = [];
  const at100: VariantRun[] = [];
  for (const v of variants) {
    const base = { id: v.id, label: v.label, kind: v.kind, ...(v.config ? { config: v.config } : {}) };
    const one: VariantRun = { ...base };
    const hundred: VariantRun = { ...base };
    at1.push(one);
    at100.push(hundred);
    if (skipPackage(one, env)) {
      hundred.skipped = one.skipped;
      continue;
    }
    let how: Start;
    if (v.how === 'python') {
      if ('missing' in env.python) {
        one.skipped =
          hundred.skipped = `Python peer skipped: ${env.python.missing} (apt-get install python3-fastapi python3-uvicorn)`;
        say(`  - ${v.label}: ${one.skipped}`);
        continue;
      }
      how = { python: env.python };
    } else how = v.how;
    say(`  story · ${v.label}`);
    await withServer(one, how, async (server) => {
      await load(server, `${v.label} warm-up`, { path: '/', connections: 100, durationS: plan.storyWarmupS });
      await server.numbers(true);
      one.load = await load(server, `${v.label} @1 connection`, {
        path: '/',
        connections: 1,
        amount: plan.storyAmountAt1,
      });
      say(`    1 connection:    ${summary(one, one.load)}`);
      one.server = await server.numbers(true);
      hundred.load = await load(server, `${v.label} @100 connections`, {
        path: '/',
        connections: 100,
        durationS: plan.storyDurationS,
        instances: 20,
        spreadMs: slowest,
      });
      hundred.server = await server.numbers();
      say(`    100 connections: ${summary(hundred, hundred.load)}`);
    });
    if (one.skipped) hundred.skipped = one.skipped;
  }

  const limit1 = 1000 / slowest;
  const limit100 = (100 * 1000) / slowest;
  const targets1: Target[] = [];
  const targets100: Target[] = [];
  for (const run of at1) {
    if (run.kind === 'package') {
      targets1.push(
        check(
          'story, 1 connection',
          run,
          `p50 ≤ 1.03 × slowest dependency (${(1.03 * slowest).toFixed(0)} ms)`,
          run.load?.latency.p50,
          (v) => v <= 1.03 * slowest,
          (v) => `${fmt.ms(v)} ms (${fmt.ratio(v / slowest)})`,
        ),
      );
    } else if (run.id === 'sequential') {
      targets1.push(
        check(
          'story, 1 connection',
          run,
          `p50 ≈ the sum (${sum} ms, within ±5%)`,
          run.load?.latency.p50,
          (v) => Math.abs(v / sum - 1) <= 0.05,
          (v) => `${fmt.ms(v)} ms (${fmt.ratio(v / sum)})`,
        ),
      );
    }
  }
  // The hand-written Promise.all has none of the package's cost: next to it, a miss shows whose it is.
  const base100 = at100.find((r) => r.id === 'promise-all')?.load;
  const baseRps = base100?.rps;
  const baseP99 = base100?.latency.p99;
  for (const run of at100) {
    if (run.kind !== 'package') continue;
    targets100.push(
      check(
        'story, 100 connections',
        run,
        `req/s ≥ 0.95 × limit (${(0.95 * limit100).toFixed(1)})`,
        run.load?.rps,
        (v) => v >= 0.95 * limit100,
        (v) =>
          `${fmt.rps(v)} (${fmt.ratio(v / limit100)})${besides(baseRps, (b) => `${fmt.rps(b)}, ${fmt.ratio(b / limit100)}`)}`,
      ),
      check(
        'story, 100 connections',
        run,
        `p99 ≤ 1.10 × slowest dependency (${(1.1 * slowest).toFixed(0)} ms)`,
        run.load?.latency.p99,
        (v) => v <= 1.1 * slowest,
        (v) => `${fmt.ms(v)} ms (${fmt.ratio(v / slowest)})${besides(baseP99, (b) => `${fmt.ms(b)} ms`)}`,
      ),
    );
  }
  const setup =
    `Dependencies of ${story.dependenciesMs.join(', ')} ms (timers; the fan-out variants pass the task's signal). ` +
    `Limit: latency = slowest dependency (${slowest} ms); throughput = connections / ${slowest / 1000} s ` +
    `(${fmt.rps(limit1)} req/s at 1 connection, ${fmt.rps(limit100)} at 100). The fan-out variants use ${cfg}: ` +
    `100 connections × 3 tasks = 300 in flight, above the default cap of 256.`;
  const rowsFor = (runs: VariantRun[], limit: number): string[][] =>
    runs.map((r) => [
      r.label,
      ...(r.load
        ? [
            fmt.ms(r.load.latency.p50),
            fmt.ms(r.load.latency.p99),
            fmt.ms(r.load.latency.max),
            fmt.ms(r.server?.latency['200']?.p99),
            fmt.rps(r.load.rps),
            fmt.ratio(r.load.latency.p50 / slowest),
            fmt.ratio(r.load.rps / limit),
            `${r.load.non2xx + r.load.errors}`,
          ]
        : [skippedCell(r), '', '', '', '', '', '', '']),
    ]);
  const columns = [
    'variant',
    'p50 ms',
    'p99 ms',
    'max ms',
    'p99 in server ms',
    'req/s',
    'p50 / slowest',
    'req/s / limit',
    'errors + non-2xx',
  ];
  const chartRows = (runs: VariantRun[]): ChartRow[] =>
    runs
      .filter((r) => r.load)
      .map((r) => ({
        label: r.label,
        p50: r.load!.latency.p50,
        p99: r.load!.latency.p99,
        note: `${fmt.rps(r.load!.rps)} req/s`,
        kind: r.kind,
      }));
  return [
    {
      id: 'story-1',
      title: 'Story, 1 connection',
      setup,
      variants: at1,
      tables: [{ columns, rows: rowsFor(at1, limit1) }],
      targets: targets1,
      chart: {
        title: 'Story endpoint, 1 connection',
        rows: chartRows(at1),
        reference: { value: slowest, label: `slowest dependency ${slowest} ms` },
      },
      notes: [`${plan.storyAmountAt1} requests per variant, one at a time, after a warm-up.`],
    },
    {
      id: 'story-100',
      title: 'Story, 100 connections',
      setup,
      variants: at100,
      tables: [{ columns, rows: rowsFor(at100, limit100) }],
      targets: targets100,
      chart: {
        title: 'Story endpoint, 100 connections',
        rows: chartRows(at100),
        reference: { value: slowest, label: `slowest dependency ${slowest} ms` },
      },
      notes: [`${plan.storyDurationS} s per variant at 100 connections, after a warm-up.`],
    },
  ];
}
