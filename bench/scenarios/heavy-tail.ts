// Scenario 3, heavy tail: 20 ms dependencies of which 5% take 2 s; no budget versus a 250 ms budget with fallbacks.
import { say } from '../harness/progress';
import { heavyTail } from '../servers/params';
import { check, fmt, inServer, skippedCell } from './format';
import type { Plan } from './plan';
import type { Environment, ScenarioResult, Target, VariantRun } from './types';
import { load, skipPackage, summary, withServer } from './variant';

export async function heavyTailScenario(plan: Plan, env: Environment): Promise<ScenarioResult> {
  const connections = 50;
  const limit = heavyTail.budgetMs + 15;
  const runs: VariantRun[] = [
    { id: 'promise-all', label: 'Promise.all, no budget', kind: 'baseline' },
    {
      id: 'fanout-all',
      label: `req.fanout.all, ${heavyTail.budgetMs} ms budget + fallbacks`,
      kind: 'package',
      config: `fanout({ budgetMs: ${heavyTail.budgetMs} }), every task { run, fallback: null }`,
    },
  ];
  for (const run of runs) {
    if (skipPackage(run, env)) continue;
    say(`  heavy tail · ${run.label}`);
    await withServer(run, { node: { file: 'heavy-tail', variant: run.id } }, async (server) => {
      await load(server, `${run.label} warm-up`, { path: '/', connections, durationS: plan.tailWarmupS });
      await server.numbers(true);
      run.load = await load(server, run.label, { path: '/', connections, durationS: plan.tailDurationS });
      run.server = await server.numbers();
      say(`    ${summary(run, run.load)}, max ${fmt.ms(run.load.latency.max)} ms`);
    });
  }
  const targets: Target[] = [];
  for (const run of runs.filter((r) => r.kind === 'package')) {
    targets.push(
      check(
        'heavy tail',
        run,
        `p99 ≤ budget + 15 ms (${limit} ms)`,
        run.load?.latency.p99,
        (v) => v <= limit,
        (v) => `${fmt.ms(v)} ms${inServer(run.server?.latency['200']?.p99)}`,
      ),
      check(
        'heavy tail',
        run,
        `max ≤ budget + 15 ms (${limit} ms)`,
        run.load?.latency.max,
        (v) => v <= limit,
        (v) => `${fmt.ms(v)} ms${inServer(run.server?.latency['200']?.max)}`,
      ),
    );
  }
  const share = (r: VariantRun, name: string, per: string): number | undefined => {
    const c = r.server?.counters;
    return c && c[per] ? (c[name] ?? 0) / c[per]! : undefined;
  };
  return {
    id: 'heavy-tail',
    title: 'Heavy tail',
    setup:
      `Three dependencies per request of ${heavyTail.fastMs} ms, except ${heavyTail.slowShare * 100}% of calls, which take ` +
      `${heavyTail.slowMs} ms (a seeded sequence, the same for both variants). ${connections} connections, ${plan.tailDurationS} s.`,
    variants: runs,
    tables: [
      {
        columns: [
          'variant',
          'p50 ms',
          'p99 ms',
          'p99.9 ms',
          'max ms',
          'p99 / max in server ms',
          'req/s',
          'fallbacks (share of calls)',
          'requests with a fallback',
          'errors + non-2xx',
        ],
        rows: runs.map((r) => [
          r.label,
          ...(r.load
            ? [
                fmt.ms(r.load.latency.p50),
                fmt.ms(r.load.latency.p99),
                fmt.ms(r.load.latency.p999),
                fmt.ms(r.load.latency.max),
                r.server?.latency['200']
                  ? `${fmt.ms(r.server.latency['200'].p99)} / ${fmt.ms(r.server.latency['200'].max)}`
                  : '—',
                fmt.rps(r.load.rps),
                r.kind === 'package' ? fmt.pct(share(r, 'fallbacks', 'calls')) : '—',
                r.kind === 'package' ? fmt.pct(share(r, 'requestsWithFallback', 'requests')) : '—',
                `${r.load.non2xx + r.load.errors}`,
              ]
            : [skippedCell(r), '', '', '', '', '', '', '', '']),
        ]),
      },
    ],
    targets,
    chart: {
      title: `Heavy tail: 20 ms calls, 5% take 2 s`,
      rows: runs
        .filter((r) => r.load)
        .map((r) => ({
          label: r.label,
          p50: r.load!.latency.p50,
          p99: r.load!.latency.p99,
          note: `p99.9 ${fmt.ms(r.load!.latency.p999)}, max ${fmt.ms(r.load!.latency.max)} ms`,
          kind: r.kind,
        })),
      reference: { value: heavyTail.budgetMs, label: `budget ${heavyTail.budgetMs} ms` },
    },
    notes: [
      'Fallbacks count the tasks that answered `null` because they missed the budget; requests with a fallback are the share of responses with at least one.',
    ],
  };
}
