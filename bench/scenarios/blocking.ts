// Scenario 5, blocking work: a CPU-heavy step inline versus on the worker pool, next to a light endpoint.
import { runLoad } from '../harness/load';
import { say } from '../harness/progress';
import { blocking } from '../servers/params';
import { check, fmt, skippedCell } from './format';
import type { Plan } from './plan';
import type { Environment, ScenarioResult, Target, VariantRun } from './types';
import { load, skipPackage, withServer } from './variant';

export async function blockingScenario(plan: Plan, env: Environment): Promise<ScenarioResult> {
  const heavyConnections = 4;
  // The light endpoint is offered a fixed rate (not as fast as it can go), so its latency measures the waiting
  // the heavy step causes, not the light endpoint's own saturation of the cores.
  const lightConnections = 20;
  const lightRate = 100;
  const runs: VariantRun[] = [
    { id: 'inline', label: 'CPU step inline', kind: 'baseline' },
    {
      id: 'pool',
      label: 'CPU step on the pool (req.fanout.worker)',
      kind: 'package',
      config: 'fanout({ workers: { script } }), default pool size',
    },
  ];
  for (const run of runs) {
    if (skipPackage(run, env)) continue;
    say(`  blocking · ${run.label}`);
    await withServer(run, { node: { file: 'blocking', variant: run.id } }, async (server) => {
      const warm = await load(server, `${run.label} warm-up`, {
        path: '/heavy',
        connections: 2,
        durationS: plan.blockingWarmupS,
      });
      if (warm.ok === 0) {
        const codes = Object.keys(warm.byStatus).join(', ') || 'no response';
        run.skipped = `req.fanout.worker is not available in this build (warm-up answered ${codes})`;
        say(`  - ${run.label}: skipped, ${run.skipped}`);
        return;
      }
      await server.numbers(true);
      const [light, heavy] = await Promise.all([
        load(server, `${run.label}: /light`, {
          path: '/light',
          connections: lightConnections,
          rate: lightRate,
          instances: 10,
          durationS: plan.blockingDurationS,
        }),
        runLoad(`http://127.0.0.1:${server.port}`, {
          path: '/heavy',
          connections: heavyConnections,
          durationS: plan.blockingDurationS,
        }),
      ]);
      run.load = light;
      run.loads = { heavy };
      run.server = await server.numbers();
      say(
        `    light p99 ${fmt.ms(light.latency.p99)} ms (${fmt.rps(light.rps)} req/s), heavy ${fmt.rps(heavy.rps)} req/s ` +
          `p99 ${fmt.ms(heavy.latency.p99)} ms, event-loop delay p99 ${fmt.ms(run.server?.eventLoopDelay.p99)} ms`,
      );
    });
  }
  const inline = runs[0]!;
  const pool = runs[1]!;
  const inlineP99 = inline.load?.latency.p99;
  const targets: Target[] = [
    check(
      'blocking',
      pool,
      `light endpoint p99 ≤ 1/5 of inline${inlineP99 ? ` (${fmt.ms(inlineP99 / 5)} ms)` : ''}`,
      inlineP99 ? pool.load?.latency.p99 : undefined,
      (v) => v <= inlineP99! / 5,
      (v) => `${fmt.ms(v)} ms (${fmt.ratio(v / inlineP99!)} of inline)`,
    ),
  ];
  return {
    id: 'blocking',
    title: 'Blocking work',
    setup:
      `\`/heavy\` runs burn(${blocking.iterations.toLocaleString('en-US')}) (about 20 ms of one core) from ${heavyConnections} connections ` +
      `as fast as they can, while \`/light\` (a constant) is offered ${lightRate} req/s from ${lightConnections} connections, ` +
      `for ${plan.blockingDurationS} s. Event-loop delay: ` +
      `perf_hooks.monitorEventLoopDelay in the server over the same window.`,
    variants: runs,
    tables: [
      {
        columns: [
          'variant',
          'light p50 ms',
          'light p99 ms',
          'light max ms',
          'light req/s',
          'heavy req/s',
          'heavy p99 ms',
          'event-loop delay p99 ms',
          'event-loop delay max ms',
          'errors + non-2xx',
        ],
        rows: runs.map((r) => {
          if (!r.load) return [r.label, skippedCell(r), '', '', '', '', '', '', '', ''];
          const heavy = r.loads?.heavy;
          return [
            r.label,
            fmt.ms(r.load.latency.p50),
            fmt.ms(r.load.latency.p99),
            fmt.ms(r.load.latency.max),
            fmt.rps(r.load.rps),
            fmt.rps(heavy?.rps),
            fmt.ms(heavy?.latency.p99),
            fmt.ms(r.server?.eventLoopDelay.p99),
            fmt.ms(r.server?.eventLoopDelay.max),
            `${r.load.non2xx + r.load.errors + (heavy ? heavy.non2xx + heavy.errors : 0)}`,
          ];
        }),
      },
    ],
    targets,
    chart: {
      title: 'Blocking work: latency of a light endpoint next to a CPU-heavy one',
      rows: runs
        .filter((r) => r.load)
        .map((r) => ({
          label: `${r.label}, /light`,
          p50: r.load!.latency.p50,
          p99: r.load!.latency.p99,
          note: `event-loop delay p99 ${fmt.ms(r.server?.eventLoopDelay.p99)} ms`,
          kind: r.kind,
        })),
    },
    notes: [],
  };
}
