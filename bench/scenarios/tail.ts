// Scenario 7, winning the tail back: hedged heavy tail next to today's fallbacks, a flaky dependency with and
// without retries, a retry storm with and without the retry budget, single-flight of equal requests.
import { say } from '../harness/progress';
import { heavyTail, tailWins, type TailVariant } from '../servers/params';
import { check, fmt, skippedCell } from './format';
import type { Plan } from './plan';
import type { Environment, ScenarioResult, Target, VariantRun } from './types';
import { load, skipPackage, summary, withServer } from './variant';

interface Part {
  id: TailVariant;
  label: string;
  config: string;
  connections: number;
  warmupS: number;
  durationS: number;
}

const counter = (r: VariantRun, name: string): number | undefined => r.server?.counters[name];
const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || !b ? undefined : a / b;

export async function tailScenario(plan: Plan, env: Environment): Promise<ScenarioResult> {
  const shortS = plan.quick ? 3 : 8;
  const parts: Part[] = [
    {
      id: 'hedge-fallback',
      label: `heavy tail, ${heavyTail.budgetMs} ms budget + fallbacks (today)`,
      config: `fanout({ budgetMs: ${heavyTail.budgetMs} }), tasks { run, fallback: null }`,
      connections: 50,
      warmupS: plan.tailWarmupS,
      durationS: plan.tailDurationS,
    },
    {
      id: 'hedge-p95',
      label: `heavy tail, hedgeMs 'p95' + fallbacks (default hedge budget)`,
      config: `the same, tasks { run, fallback: null, ${JSON.stringify(tailWins.hedgeTask).slice(1, -1)} }`,
      connections: 50,
      warmupS: plan.tailWarmupS,
      durationS: plan.tailDurationS,
    },
    {
      id: 'hedge-p95-tuned',
      label: `heavy tail, hedgeMs 'p95', hedges: 2, hedge budget 10 %`,
      config: `fanout({ budgetMs: ${heavyTail.budgetMs}, hedgeBudget: { ratio: 0.1 } }), tasks { run, fallback: null, hedgeMs: 'p95', hedges: 2 }`,
      connections: 50,
      warmupS: plan.tailWarmupS,
      durationS: plan.tailDurationS,
    },
    {
      id: 'flaky-none',
      label: 'flaky (10 % fail), no retries',
      config: `three required 20 ms tasks, budget ${heavyTail.budgetMs} ms`,
      connections: 50,
      warmupS: 1,
      durationS: shortS,
    },
    {
      id: 'flaky-retries',
      label: 'flaky (10 % fail), retries: 2',
      config: 'the same, tasks { run, retries: 2 }, default retry budget',
      connections: 50,
      warmupS: 1,
      durationS: shortS,
    },
    {
      id: 'storm-naive',
      label: 'retry storm, retries: 3, no budget',
      config: 'every call fails after 20 ms; retryBudget too large to bind',
      connections: 50,
      warmupS: 0,
      durationS: tailWins.stormS,
    },
    {
      id: 'storm-budget',
      label: 'retry storm, retries: 3, default retry budget',
      config: 'every call fails after 20 ms; retryBudget 20 % + 10/s over 10 s',
      connections: 50,
      warmupS: 0,
      durationS: tailWins.stormS,
    },
    {
      id: 'sf-none',
      label: `same key, ${tailWins.singleFlightConnections} connections, no key`,
      config: `one 100 ms task per request`,
      connections: tailWins.singleFlightConnections,
      warmupS: 1,
      durationS: shortS,
    },
    {
      id: 'sf-key',
      label: `same key, ${tailWins.singleFlightConnections} connections, key: 'user:42'`,
      config: 'the same task with a key: single-flight',
      connections: tailWins.singleFlightConnections,
      warmupS: 1,
      durationS: shortS,
    },
  ];
  const runs: VariantRun[] = parts.map((p) => ({
    id: p.id,
    label: p.label,
    kind: 'package',
    config: p.config,
  }));
  for (const [i, part] of parts.entries()) {
    const run = runs[i]!;
    if (skipPackage(run, env)) continue;
    say(`  tail · ${run.label}`);
    await withServer(run, { node: { file: 'tail', variant: run.id } }, async (server) => {
      if (part.warmupS > 0) {
        await load(server, `${run.label} warm-up`, {
          path: '/',
          connections: part.connections,
          durationS: part.warmupS,
        });
      }
      await server.numbers(true);
      run.load = await load(server, run.label, {
        path: '/',
        connections: part.connections,
        durationS: part.durationS,
      });
      run.server = await server.numbers();
      say(`    ${summary(run, run.load)}, max ${fmt.ms(run.load.latency.max)} ms`);
    });
  }
  const by = (id: TailVariant): VariantRun => runs.find((r) => r.id === id)!;
  const [fallback, hedgedDefaults, hedged, flakyNone, flakyRetries, naive, budgeted, sfNone, sfKey] = [
    by('hedge-fallback'),
    by('hedge-p95'),
    by('hedge-p95-tuned'),
    by('flaky-none'),
    by('flaky-retries'),
    by('storm-naive'),
    by('storm-budget'),
    by('sf-none'),
    by('sf-key'),
  ];
  const extraCalls = (r: VariantRun): number | undefined => {
    const calls = counter(r, 'calls');
    const tasks = counter(r, 'tasks');
    return calls === undefined || !tasks ? undefined : calls / tasks - 1;
  };
  const fallbackShare = (r: VariantRun) =>
    ratio(counter(r, 'requestsWithFallback') ?? 0, counter(r, 'requests'));
  const okShare = (r: VariantRun) => ratio(r.load?.ok, r.load?.responses);
  const callsPerRequest = (r: VariantRun) => ratio(counter(r, 'calls'), counter(r, 'requests'));
  const per100ms = (r: VariantRun) => {
    const calls = counter(r, 'calls');
    return calls === undefined || !r.load ? undefined : calls / (r.load.durationS * 10);
  };
  const stormFloor = 100; // the default reserve: 10 a second over the 10 s window
  const targets: Target[] = [
    check(
      'tail',
      hedged,
      'p99 ≤ 60 ms',
      hedged.load?.latency.p99,
      (v) => v <= 60,
      (v) => `${fmt.ms(v)} ms`,
    ),
    check(
      'tail',
      hedged,
      'requests that needed a fallback ≤ 0.5 %',
      fallbackShare(hedged),
      (v) => v <= 0.005,
      (v) => fmt.pct(v),
    ),
    check(
      'tail',
      hedged,
      'extra downstream calls ≤ 10 %',
      extraCalls(hedged),
      (v) => v <= 0.1,
      (v) => fmt.pct(v),
    ),
    check(
      'tail',
      flakyRetries,
      '≥ 99.5 % of requests succeed',
      okShare(flakyRetries),
      (v) => v >= 0.995,
      (v) => fmt.pct(v),
    ),
    check(
      'tail',
      budgeted,
      `downstream calls ≤ 1.25 × requests + ${stormFloor} (the reserve)`,
      counter(budgeted, 'calls'),
      (v) => v <= 1.25 * (counter(budgeted, 'requests') ?? 0) + stormFloor,
      (v) =>
        `${v} calls for ${counter(budgeted, 'requests') ?? 0} requests (${fmt.ratio(callsPerRequest(budgeted))})`,
    ),
    check(
      'tail',
      sfKey,
      'downstream executions ≤ 2 per 100 ms',
      per100ms(sfKey),
      (v) => v <= 2,
      (v) => v.toFixed(2),
    ),
    check(
      'tail',
      sfKey,
      'p50 ≈ 100 ms (90 to 130)',
      sfKey.load?.latency.p50,
      (v) => v >= 90 && v <= 130,
      (v) => `${fmt.ms(v)} ms`,
    ),
  ];
  const row = (r: VariantRun, cells: () => string[], width: number): string[] =>
    r.load ? [r.label, ...cells()] : [r.label, skippedCell(r), ...Array<string>(width - 1).fill('')];
  return {
    id: 'tail',
    title: 'Winning the tail back',
    setup:
      `Heavy tail: three optional tasks per request on the heavy-tail dependency (${heavyTail.fastMs} ms, ` +
      `${heavyTail.slowShare * 100}% take ${heavyTail.slowMs} ms), 50 connections, ${plan.tailDurationS} s. Flaky: ` +
      `three required 20 ms tasks, 10 % of calls fail at random, ${shortS} s. Retry storm: one task whose every call ` +
      `fails, ${tailWins.stormS} s. Single-flight: ${tailWins.singleFlightConnections} connections ask for one ` +
      `100 ms dependency, ${shortS} s.`,
    variants: runs,
    tables: [
      {
        columns: [
          'heavy tail',
          'p50 ms',
          'p99 ms',
          'p99.9 ms',
          'max ms',
          'req/s',
          'requests with a fallback',
          'extra downstream calls',
        ],
        rows: [fallback, hedgedDefaults, hedged].map((r) =>
          row(
            r,
            () => [
              fmt.ms(r.load!.latency.p50),
              fmt.ms(r.load!.latency.p99),
              fmt.ms(r.load!.latency.p999),
              fmt.ms(r.load!.latency.max),
              fmt.rps(r.load!.rps),
              fmt.pct(fallbackShare(r)),
              fmt.pct(extraCalls(r)),
            ],
            7,
          ),
        ),
      },
      {
        columns: [
          'flaky and storm',
          'requests',
          'succeeded',
          'downstream calls',
          'calls / request',
          'p50 ms',
          'p99 ms',
        ],
        rows: [flakyNone, flakyRetries, naive, budgeted].map((r) =>
          row(
            r,
            () => [
              `${counter(r, 'requests') ?? 0}`,
              fmt.pct(okShare(r)),
              `${counter(r, 'calls') ?? 0}`,
              fmt.ratio(callsPerRequest(r)),
              fmt.ms(r.load!.latency.p50),
              fmt.ms(r.load!.latency.p99),
            ],
            6,
          ),
        ),
      },
      {
        columns: [
          'single-flight',
          'requests',
          'downstream executions',
          'per 100 ms',
          'p50 ms',
          'p99 ms',
          'req/s',
        ],
        rows: [sfNone, sfKey].map((r) =>
          row(
            r,
            () => [
              `${counter(r, 'requests') ?? 0}`,
              `${counter(r, 'calls') ?? 0}`,
              fmt.ms(per100ms(r)),
              fmt.ms(r.load!.latency.p50),
              fmt.ms(r.load!.latency.p99),
              fmt.rps(r.load!.rps),
            ],
            6,
          ),
        ),
      },
    ],
    targets,
    chart: {
      title: 'Heavy tail: fallbacks at the budget versus a hedge at the p95',
      rows: [fallback, hedgedDefaults, hedged]
        .filter((r) => r.load)
        .map((r) => ({
          label: r.label,
          p50: r.load!.latency.p50,
          p99: r.load!.latency.p99,
          note: `p99.9 ${fmt.ms(r.load!.latency.p999)}, max ${fmt.ms(r.load!.latency.max)} ms`,
          kind: r.kind,
        })),
      reference: { value: 60, label: 'target p99 60 ms' },
    },
    notes: [
      'Downstream calls are counted by the dependency itself: hedges and retries included, aborted losers included.',
      'Extra downstream calls: calls over the tasks requested, minus one. Requests with a fallback: responses with at least one `null`.',
    ],
  };
}
