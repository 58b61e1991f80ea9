// Scenario 4, overload: three times what the downstream can serve; unbounded versus bounded with shedding.
import type { LoadResult } from '../harness/load';
import { say } from '../harness/progress';
import { overload } from '../servers/params';
import { besides, check, fmt, inServer, skippedCell } from './format';
import type { Plan } from './plan';
import type { ChartRow, Environment, ScenarioResult, Target, VariantRun } from './types';
import { load, skipPackage, withServer } from './variant';

export async function overloadScenario(plan: Plan, env: Environment): Promise<ScenarioResult> {
  const connections = 300;
  const capacity = (overload.capacity * 1000) / overload.callMs / overload.callsPerRequest;
  const offered = Math.round(3 * capacity);
  // autocannon paces a rate in one-second windows per connection, all opening together: spread over 30
  // instances, arrivals come in small groups every 33 ms instead of one burst of 300 connections a second.
  const overloadInstances = 30;
  const runs: VariantRun[] = [
    { id: 'unbounded', label: 'Promise.all, unbounded', kind: 'baseline' },
    {
      id: 'fanout-all',
      label: 'req.fanout.all',
      kind: 'package',
      config: `fanout({ concurrency: ${overload.capacity}, maxQueue: ${overload.maxQueue}, budgetMs: ${overload.budgetMs} })`,
    },
  ];
  for (const run of runs) {
    if (skipPackage(run, env)) continue;
    say(`  overload · ${run.label}`);
    await withServer(run, { node: { file: 'overload', variant: run.id } }, async (server) => {
      // Warm (JIT, sockets) well below capacity, then take the idle server's RSS as the reference.
      await load(server, `${run.label} warm-up`, {
        path: '/',
        connections: 20,
        rate: Math.round(capacity / 3),
        durationS: plan.overloadWarmupS,
      });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const idle = await server.numbers(true);
      run.load = await load(server, `${run.label} at ${offered} req/s offered`, {
        path: '/',
        connections,
        rate: offered,
        instances: overloadInstances,
        durationS: plan.overloadDurationS,
      });
      const after = await server.numbers();
      if (after) run.server = { ...after, ...(idle ? { idleRss: idle.rss } : {}) };
      const s503 = run.load.byStatus['503'];
      say(
        `    2xx p99 ${fmt.ms(run.load.okLatency.p99)} ms, ${fmt.rps(run.load.okRps)} 2xx/s` +
          `${s503 ? `, 503s ${s503.count} (p99 ${fmt.ms(s503.p99)} ms)` : ''}, peak RSS ${fmt.mib(run.server?.peakRss)}`,
      );
    });
  }
  const targets: Target[] = [];
  const baseline = runs.find((r) => r.id === 'unbounded');
  for (const run of runs.filter((r) => r.kind === 'package')) {
    const s503 = run.load?.byStatus['503'];
    targets.push(
      check(
        'overload',
        run,
        `successful p99 ≤ budget (${overload.budgetMs} ms)`,
        run.load?.okLatency.p99,
        (v) => v <= overload.budgetMs,
        (v) => `${fmt.ms(v)} ms${inServer(run.server?.latency['200']?.p99)}`,
      ),
      s503
        ? check(
            'overload',
            run,
            '503s answered in ≤ 5 ms p99',
            s503.p99,
            (v) => v <= 5,
            (v) => `${fmt.ms(v)} ms${inServer(run.server?.latency['503']?.p99)}; ${s503.count} 503s`,
          )
        : {
            scenario: 'overload',
            variant: run.label,
            target: '503s answered in ≤ 5 ms p99',
            measured: run.load
              ? 'no 503 was sent: the scenario did not overload the package'
              : 'not measured',
            holds: run.load ? false : null,
          },
      check(
        'overload',
        run,
        'peak RSS ≤ 1.5 × the idle server’s',
        run.server?.idleRss ? run.server.peakRss / run.server.idleRss : undefined,
        (v) => v <= 1.5,
        (v) =>
          `${fmt.mib(run.server!.peakRss)} / ${fmt.mib(run.server!.idleRss)} (${fmt.ratio(v)})` +
          besides(
            baseline?.server?.idleRss ? baseline.server.peakRss / baseline.server.idleRss : undefined,
            (b) => fmt.ratio(b),
            'unbounded Promise.all',
          ),
      ),
    );
  }
  const other = (r: LoadResult): number =>
    Object.entries(r.byStatus)
      .filter(([code]) => !code.startsWith('2') && code !== '503')
      .reduce((s, [, p]) => s + p.count, 0);
  return {
    id: 'overload',
    title: 'Overload',
    setup:
      `A downstream with ${overload.capacity} connections, ${overload.callMs} ms per call, ${overload.callsPerRequest} calls per request: ` +
      `capacity ${fmt.rps(capacity)} req/s. Offered ${offered} req/s (3×) from ${connections} connections ` +
      `(autocannon overallRate, split over ${overloadInstances} instances started evenly over a second), ${plan.overloadDurationS} s. Unbounded, the excess ` +
      `waits in the downstream's queue; the package (concurrency = the downstream's capacity) queues ` +
      `${overload.maxQueue} tasks and sheds the rest with 503. Idle RSS: after a warm-up at a third of capacity.`,
    variants: runs,
    tables: [
      {
        columns: [
          'variant',
          '2xx/s',
          '2xx p50 ms',
          '2xx p99 ms',
          '2xx max ms',
          '2xx p99 in server ms',
          '503 share',
          '503 p50 ms',
          '503 p99 ms',
          '503 p99 in server ms',
          'other non-2xx + errors',
        ],
        rows: runs.map((r) => {
          if (!r.load) return [r.label, skippedCell(r), '', '', '', '', '', '', '', '', ''];
          const s503 = r.load.byStatus['503'];
          return [
            r.label,
            fmt.rps(r.load.okRps),
            fmt.ms(r.load.okLatency.p50),
            fmt.ms(r.load.okLatency.p99),
            fmt.ms(r.load.okLatency.max),
            fmt.ms(r.server?.latency['200']?.p99),
            fmt.pct((s503?.count ?? 0) / Math.max(1, r.load.responses)),
            fmt.ms(s503?.p50),
            fmt.ms(s503?.p99),
            fmt.ms(r.server?.latency['503']?.p99),
            `${other(r.load) + r.load.errors}`,
          ];
        }),
      },
      {
        columns: [
          'variant',
          'idle RSS',
          'peak RSS',
          'peak / idle',
          'peak − idle',
          'downstream queue peak',
          'server event-loop delay p99 ms',
          'load generator event-loop delay p99 ms',
        ],
        rows: runs.map((r) => {
          if (!r.load) return [r.label, skippedCell(r), '', '', '', '', '', ''];
          return [
            r.label,
            fmt.mib(r.server?.idleRss),
            fmt.mib(r.server?.peakRss),
            r.server?.idleRss ? fmt.ratio(r.server.peakRss / r.server.idleRss) : '—',
            r.server?.idleRss ? fmt.mib(r.server.peakRss - r.server.idleRss) : '—',
            `${r.server?.counters.downstreamQueuePeak ?? 0}`,
            fmt.ms(r.server?.eventLoopDelay.p99),
            fmt.ms(r.load.generatorEventLoopDelay.p99),
          ];
        }),
      },
    ],
    targets,
    chart: {
      title: `Overload: ${offered} req/s offered to a ${fmt.rps(capacity)} req/s downstream`,
      rows: runs.flatMap((r): ChartRow[] => {
        if (!r.load) return [];
        const rows: ChartRow[] = [
          {
            label: `${r.label}, 2xx`,
            p50: r.load.okLatency.p50,
            p99: r.load.okLatency.p99,
            note: `${fmt.rps(r.load.okRps)} 2xx/s`,
            kind: r.kind,
          },
        ];
        const s503 = r.load.byStatus['503'];
        if (s503)
          rows.push({
            label: `${r.label}, 503`,
            p50: s503.p50,
            p99: s503.p99,
            note: `${fmt.pct(s503.count / r.load.responses)} of responses`,
            kind: r.kind,
          });
        return rows;
      }),
      reference: { value: overload.budgetMs, label: `budget ${overload.budgetMs} ms` },
    },
    notes: [
      'Latencies are split by status: 2xx are the successful responses, 503s the shed ones. "In server" is measured ' +
        "inside the server process, from the app's first middleware to the response's finish; the other latencies " +
        'are what the client saw, network and the load generator’s own event-loop delay included.',
    ],
  };
}
