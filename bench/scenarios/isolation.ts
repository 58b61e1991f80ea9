// Isolation: a saturated dependency beside a healthy one, behind one middleware. `/slow` is offered three times what
// its downstream (32 connections x 50 ms, three calls a request) can serve; `/fast` (one 5 ms call) gets 200 req/s.
// The defaults with `/fast` alone, the defaults with both, and two middleware instances tuned by hand as bulkheads.
import type { LoadResult } from '../harness/load';
import { say } from '../harness/progress';
import { ISOLATION_BULKHEADS, isolation } from '../servers/pressure-params';
import { check, fmt, skippedCell } from './format';
import type { Plan } from './plan';
import {
  DEPENDENCY_LIMIT,
  layout,
  median,
  medianRound,
  onFreshServer,
  pinned,
  type Round,
  rssCell,
  rssRatio,
  serverVariant,
  settle,
  shareOf,
  spread,
  statsTraceTable,
  traceLines,
  windowRate,
  withBeforeTwins,
  fullRounds,
} from './pressure';
import type { ChartRow, Environment, ScenarioResult, Table, Target, TraceLine, VariantRun } from './types';
import { load } from './variant';

const SLOW_CAPACITY = (isolation.slowCapacity * 1000) / isolation.slowCallMs / isolation.slowCallsPerRequest;

export async function isolationScenario(plan: Plan, env: Environment): Promise<ScenarioResult> {
  const p = plan.quick
    ? { rounds: 1, warmupS: 1, durationS: 3 }
    : { rounds: fullRounds(), warmupS: 2, durationS: 6 };
  const slowRate = Math.round(isolation.slowOverload * SLOW_CAPACITY);
  const runs: VariantRun[] = [
    {
      id: 'fast-alone',
      label: 'defaults, /fast alone',
      kind: 'package',
      config: `fanout({ budgetMs: ${isolation.budgetMs} }), /slow not loaded`,
    },
    {
      id: 'defaults',
      label: 'defaults, both routes',
      kind: 'package',
      config: `fanout({ budgetMs: ${isolation.budgetMs} }) for both routes`,
    },
    {
      id: 'bulkheads',
      label: 'hand-tuned bulkheads',
      kind: 'package',
      config: `/slow: fanout(${JSON.stringify({ budgetMs: isolation.budgetMs, ...ISOLATION_BULKHEADS.slow })}), /fast: fanout(${JSON.stringify({ budgetMs: isolation.budgetMs, ...ISOLATION_BULKHEADS.fast })})`,
    },
  ];
  const roots = withBeforeTwins(runs);
  const serverOf = (run: VariantRun): string =>
    serverVariant(run) === 'bulkheads' ? 'bulkheads' : 'defaults';
  const alone = (run: VariantRun): boolean => serverVariant(run) === 'fast-alone';
  const rounds = new Map<VariantRun, Round[]>(runs.map((r) => [r, []]));

  const cpus = await pinned('isolation', async (cpus) => {
    for (let round = 0; round < p.rounds; round++) {
      const order = runs.map((_, i) => runs[(i + round) % runs.length]!);
      for (const run of order) {
        await onFreshServer(
          run,
          'isolation',
          env,
          roots,
          cpus,
          async (server) => {
            // Warm both routes well below capacity (JIT, sockets, latency estimates), then take the idle RSS.
            await Promise.all([
              load(server, `${run.label} warm-up`, {
                path: '/fast',
                connections: 10,
                rate: 50,
                durationS: p.warmupS,
              }),
              load(server, `${run.label} warm-up /slow`, {
                path: '/slow',
                connections: 20,
                rate: Math.round(SLOW_CAPACITY / 3),
                durationS: p.warmupS,
              }),
            ]);
            await settle(500);
            const idle = await server.numbers(true);
            const fastLoad = load(server, `${run.label}, round ${round + 1}: /fast`, {
              path: '/fast',
              connections: 20,
              rate: isolation.fastRate,
              instances: 10,
              durationS: p.durationS,
            });
            const slowLoad = alone(run)
              ? undefined
              : load(server, `${run.label}, round ${round + 1}: /slow`, {
                  path: '/slow',
                  connections: 300,
                  rate: slowRate,
                  instances: 30,
                  durationS: p.durationS,
                });
            const [fast, slow] = await Promise.all([fastLoad, slowLoad]);
            const after = await server.numbers();
            rounds.get(run)!.push({
              load: fast,
              ...(slow ? { loads: { slow } } : {}),
              server: after ? { ...after, ...(idle ? { idleRss: idle.rss } : {}) } : undefined,
            });
            say(
              `    ${run.label}: /fast ${fmt.pct(fast.ok / Math.max(1, fast.responses))} 2xx, p99 ${fmt.ms(fast.latency.p99)} ms` +
                (slow
                  ? `; /slow ${fmt.rps(slow.okRps)} 2xx/s (${fmt.ratio(slow.okRps / SLOW_CAPACITY)} of capacity), ` +
                    `${fmt.pct(shareOf(slow, '503'))} 503`
                  : ''),
            );
          },
          serverOf,
        );
      }
    }
    return cpus;
  });

  const okShare = (r: LoadResult): number => r.ok / Math.max(1, r.responses);
  const slowOf = (r: Round): LoadResult | undefined => r.loads?.slow;
  /** /slow's 2xx/s inside the offered window (from 1 s, once every load instance has started, to its end). */
  const slowAnswered = (r: Round): number =>
    windowRate(r.server, 'slowOk', 1, p.durationS, slowOf(r)?.okRps ?? Number.NaN);
  const table: Table = {
    columns: [
      'variant',
      '/fast 2xx share',
      '/fast p99 ms (all answers)',
      '/fast 2xx p99 ms',
      '/fast 503 share',
      '/slow 2xx/s in the offered window',
      '/slow share of its capacity',
      '/slow 503 share',
      '/slow 504 share',
      '/slow 2xx p99 ms',
      'peak / idle RSS',
    ],
    rows: runs.map((run) => {
      const list = rounds.get(run)!;
      if (list.length === 0) return [run.label, skippedCell(run), '', '', '', '', '', '', '', '', ''];
      const slow = list.map(slowOf).filter((l): l is LoadResult => l !== undefined);
      const slowRates = list.filter((r) => slowOf(r)).map(slowAnswered);
      return [
        run.label,
        spread(
          list.map((r) => okShare(r.load)),
          fmt.pct,
        ),
        spread(
          list.map((r) => r.load.latency.p99),
          fmt.ms,
        ),
        spread(
          list.map((r) => r.load.okLatency.p99),
          fmt.ms,
        ),
        spread(
          list.map((r) => shareOf(r.load, '503')),
          fmt.pct,
        ),
        slow.length ? spread(slowRates, fmt.rps) : '—',
        slow.length
          ? spread(
              slowRates.map((v) => v / SLOW_CAPACITY),
              fmt.ratio,
            )
          : '—',
        slow.length
          ? spread(
              slow.map((l) => shareOf(l, '503')),
              fmt.pct,
            )
          : '—',
        slow.length
          ? spread(
              slow.map((l) => shareOf(l, '504')),
              fmt.pct,
            )
          : '—',
        slow.length
          ? spread(
              slow.map((l) => l.okLatency.p99),
              fmt.ms,
            )
          : '—',
        rssCell(list),
      ];
    }),
  };

  const fastAlone = runs.find((r) => r.id === 'fast-alone')!;
  const defaults = runs.find((r) => r.id === 'defaults')!;
  const aloneP99 = median(rounds.get(fastAlone)!.map((r) => r.load.latency.p99));
  const list = rounds.get(defaults)!;
  const targets: Target[] = [
    check(
      'isolation',
      defaults,
      '/fast keeps ≥ 98 % of its answers (2xx) beside the saturated /slow',
      list.length ? median(list.map((r) => okShare(r.load))) : undefined,
      (v) => v >= 0.98,
      (v) =>
        `${fmt.pct(v)} (${spread(
          list.map((r) => okShare(r.load)),
          fmt.pct,
        )})`,
    ),
    check(
      'isolation',
      defaults,
      `/fast p99 ≤ 2 × its p99 alone + 10 ms${Number.isFinite(aloneP99) ? ` (${fmt.ms(2 * aloneP99 + 10)} ms)` : ''}`,
      list.length && Number.isFinite(aloneP99) ? median(list.map((r) => r.load.latency.p99)) : undefined,
      (v) => v <= 2 * aloneP99 + 10,
      (v) => `${fmt.ms(v)} ms; alone ${fmt.ms(aloneP99)} ms`,
    ),
    check(
      'isolation',
      defaults,
      `/slow answered ≥ 0.8 × its dependency's capacity (${fmt.rps(0.8 * SLOW_CAPACITY)} req/s)`,
      list.length ? median(list.map((r) => slowAnswered(r) / SLOW_CAPACITY)) : undefined,
      (v) => v >= 0.8,
      (v) =>
        `${fmt.ratio(v)} (${spread(
          list.map((r) => slowAnswered(r) / SLOW_CAPACITY),
          fmt.ratio,
        )})`,
    ),
    check(
      'isolation',
      defaults,
      'peak RSS ≤ 1.5 × the idle server’s',
      list.length ? median(list.map(rssRatio)) : undefined,
      (v) => v <= 1.5,
      (v) => `${fmt.ratio(v)} (${rssCell(list)})`,
    ),
  ];

  const traced = medianRound(list, (r) => okShare(r.load));
  const bulk = medianRound(rounds.get(runs.find((r) => r.id === 'bulkheads')!)!, (r) => okShare(r.load));
  const lines: TraceLine[] = [
    ...traceLines(traced?.server, /^stats\.(limit)$/, () => 'defaults: process-wide limit'),
    ...traceLines(traced?.server, DEPENDENCY_LIMIT, (dep) => `defaults: ${dep} limit`),
    ...traceLines(bulk?.server, /^stats\.(slow)\.limit$/, () => 'bulkheads: /slow instance limit (fixed)'),
  ];
  const traceTable = statsTraceTable(traced?.server, [
    /^stats\.limit$/,
    DEPENDENCY_LIMIT,
    /^stats\.dependencies\.[^.]+\.(?:running|queued|shed)$/,
    /^stats\.shed$/,
    /^stats\.queued$/,
  ]);
  const tables = [table];
  if (traceTable) tables.push(traceTable);

  const chartRows: ChartRow[] = runs.flatMap((run): ChartRow[] => {
    const r = medianRound(rounds.get(run)!, (x) => okShare(x.load));
    if (!r) return [];
    run.load = r.load;
    if (r.loads) run.loads = r.loads;
    if (r.server) run.server = r.server;
    const rows: ChartRow[] = [
      {
        label: `${run.label}: /fast`,
        p50: r.load.latency.p50,
        p99: r.load.latency.p99,
        note: `${fmt.pct(okShare(r.load))} 2xx`,
        kind: run.kind,
      },
    ];
    const slow = slowOf(r);
    if (slow)
      rows.push({
        label: `${run.label}: /slow`,
        p50: slow.latency.p50,
        p99: slow.latency.p99,
        note: `${fmt.ratio(slowAnswered(r) / SLOW_CAPACITY)} of capacity`,
        kind: run.kind,
      });
    return rows;
  });

  return {
    id: 'isolation',
    title: 'Isolation: a saturated dependency beside a healthy one',
    setup:
      `\`/slow\`: three calls to a downstream of ${isolation.slowCapacity} connections × ${isolation.slowCallMs} ms ` +
      `(capacity ${fmt.rps(SLOW_CAPACITY)} req/s), offered ${slowRate} req/s (${isolation.slowOverload}×) from 300 ` +
      `connections (30 autocannon instances). \`/fast\`: one ${isolation.fastMs} ms call, offered ` +
      `${isolation.fastRate} req/s from 20 connections. Budget ${isolation.budgetMs} ms. Where the package lists ` +
      `\`stats().dependencies\`, /slow's three tasks say \`dependency: '${isolation.slowDependency}'\` (they call one ` +
      `database); before, the option does not exist. ${p.durationS} s a round after a ${p.warmupS} s warm-up at ` +
      `a third of capacity, ${p.rounds} round(s), fresh servers, rotating order. ${layout(cpus)} Values: median ` +
      '[min–max] of the rounds.',
    variants: runs,
    tables,
    targets,
    chart: {
      title: 'Isolation: /fast beside a saturated /slow',
      rows: chartRows,
      reference: { value: isolation.budgetMs, label: `budget ${isolation.budgetMs} ms` },
    },
    ...(lines.length
      ? {
          traces: {
            title: 'Isolation: limits over time (the median round), sampled every 100 ms',
            stepS: 0.1,
            yLabel: 'tasks',
            lines,
          },
        }
      : {}),
    notes: [
      "The second table is the defaults' `stats()` every 0.5 s (both routes loaded, the median round), read " +
        'defensively: per-dependency fields appear only where the package has them.',
    ],
  };
}
