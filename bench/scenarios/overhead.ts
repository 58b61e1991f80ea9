// Scenario 2, overhead: three zero-delay async tasks, so the route measures the machinery around them.
//
// On a shared machine the speed available to a process drifts by tens of percent from one ten-second stretch to
// the next, more than the differences measured here. So every variant's server runs for the whole scenario, the
// variants take turns in short rounds (the order rotating), and each variant is compared with Promise.all within
// the same round: the median of those paired ratios is the result.
import type { LoadResult } from '../harness/load';
import { say } from '../harness/progress';
import type { ServerNumbers } from '../harness/protocol';
import { affinity, pin, type ServerHandle } from '../harness/server-process';
import { check, fmt, skippedCell } from './format';
import type { Plan } from './plan';
import type { Environment, ScenarioResult, VariantRun } from './types';
import { load, skipPackage, startVariant } from './variant';

const median = (values: number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

interface Round {
  load: LoadResult;
  server: ServerNumbers | undefined;
}

export async function overheadScenario(plan: Plan, env: Environment): Promise<ScenarioResult> {
  const connections = 50;
  const runs: VariantRun[] = [
    { id: 'constant', label: 'constant (the floor)', kind: 'baseline' },
    { id: 'promise-all', label: 'Promise.all', kind: 'baseline' },
    { id: 'p-limit', label: 'p-limit', kind: 'baseline', config: 'pLimit(256), one for the process' },
    { id: 'fanout-all', label: 'req.fanout.all', kind: 'package', config: 'fanout({ serverTiming: false })' },
    {
      id: 'fanout-all-server-timing',
      label: 'req.fanout.all + Server-Timing',
      kind: 'package',
      config: 'fanout({ serverTiming: true }) (the default outside production)',
    },
  ];
  // BENCH_BEFORE_ROOT=/path/to/an/older/checkout (built, with this bench/ copied in): the package's variants also
  // run from there, in the same rounds, so before and after are compared with Promise.all side by side.
  const beforeRoot = process.env.BENCH_BEFORE_ROOT;
  const roots = new Map<VariantRun, string>();
  if (beforeRoot) {
    for (const run of runs.filter((r) => r.kind === 'package')) {
      const before: VariantRun = { ...run, label: `${run.label} [before]`, kind: 'baseline' };
      roots.set(before, beforeRoot);
      runs.splice(runs.indexOf(run), 0, before);
    }
  }
  const servers = new Map<VariantRun, ServerHandle>();
  const rounds = new Map<VariantRun, Round[]>(runs.map((r) => [r, []]));
  // Servers on CPU 0, the load generator (this process) on CPU 1, as issue 19 measured: the generator's own
  // bursts then never take the server's core. Unpinned (and said so) where taskset is missing.
  const ownCpus = affinity(process.pid);
  const pinned = ownCpus !== undefined && pin(process.pid, '1');
  if (!pinned) say('  overhead · taskset unavailable: servers and load generator not pinned');
  try {
    for (const run of runs) {
      const root = roots.get(run);
      if (!root && skipPackage(run, env)) continue;
      const server = await startVariant(run, {
        node: {
          file: 'overhead',
          variant: run.id,
          ...(root ? { root } : {}),
          ...(pinned ? { cpus: '0' } : {}),
        },
      });
      if (!server) continue;
      servers.set(run, server);
      say(`  overhead · warm-up · ${run.label}`);
      await load(server, `${run.label} warm-up`, { path: '/', connections, durationS: plan.overheadWarmupS });
    }
    const live = runs.filter((r) => servers.has(r));
    for (let round = 0; round < plan.overheadRounds; round++) {
      const order = live.map((_, i) => live[(i + round) % live.length]!);
      const line: string[] = [];
      for (const run of order) {
        const server = servers.get(run)!;
        await server.numbers(true);
        const result = await load(server, `round ${round + 1}/${plan.overheadRounds} · ${run.label}`, {
          path: '/',
          connections,
          durationS: plan.overheadDurationS,
        });
        rounds.get(run)!.push({ load: result, server: await server.numbers() });
        line.push(`${run.id} ${fmt.rps(result.rps)}`);
      }
      say(`  overhead · round ${round + 1}/${plan.overheadRounds} (req/s): ${line.join(', ')}`);
    }
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop()));
    if (pinned) pin(process.pid, ownCpus);
  }

  const baseRounds = runs.find((r) => r.id === 'promise-all')!;
  const base = rounds.get(baseRounds)!;
  const ratios = new Map<VariantRun, number[]>();
  for (const run of runs) {
    const list = rounds.get(run)!;
    if (list.length === 0) continue;
    run.rounds = list.map((r) => r.load.rps);
    const med = median(run.rounds);
    // The round closest to the median stands for the variant (its latencies go in the table).
    const typical = list.reduce((best, r) =>
      Math.abs(r.load.rps - med) < Math.abs(best.load.rps - med) ? r : best,
    );
    run.load = { ...typical.load, rps: med };
    if (typical.server) run.server = typical.server;
    if (base.length === list.length)
      ratios.set(
        run,
        list.map((r, i) => r.load.rps / base[i]!.load.rps),
      );
  }
  const cpuPerRequest = (run: VariantRun): number =>
    median(
      rounds
        .get(run)!
        .filter((r) => r.server && r.load.responses > 0)
        .map((r) => (r.server!.cpuMs * 1000) / r.load.responses),
    );
  // The server is CPU-bound here, so req/s ∝ 1 / (CPU per request): the same comparison from the server's own
  // CPU time, which a busy neighbour disturbs less than it disturbs req/s. Paired per round, like the req/s ratio.
  const cpuOf = (r: Round): number =>
    r.server && r.load.responses > 0 ? (r.server.cpuMs * 1000) / r.load.responses : NaN;
  const cpuRatios = new Map<VariantRun, number[]>();
  for (const run of runs) {
    const list = rounds.get(run)!;
    if (list.length === 0 || list.length !== base.length) continue;
    const paired = list.map((r, i) => cpuOf(base[i]!) / cpuOf(r)).filter(Number.isFinite);
    if (paired.length) cpuRatios.set(run, paired);
  }
  const range = (values: number[] | undefined): string =>
    values?.length ? `${fmt.ratio(Math.min(...values))} – ${fmt.ratio(Math.max(...values))}` : '—';

  const targets = runs
    .filter((r) => r.kind === 'package')
    .map((r) =>
      check(
        'overhead',
        r,
        // Issue 19: the defaults (Server-Timing off, as in production) within 5 % of Promise.all.
        `req/s ≥ ${r.id === 'fanout-all' ? '0.95' : '0.90'} × Promise.all (median of the paired round ratios)`,
        ratios.has(r) ? median(ratios.get(r)!) : undefined,
        (v) => v >= (r.id === 'fanout-all' ? 0.95 : 0.9),
        (v) =>
          `${fmt.ratio(v)} (rounds ${range(ratios.get(r))}; ${fmt.rps(r.load!.rps)} against ${fmt.rps(baseRounds.load?.rps)} req/s)` +
          (cpuRatios.has(r) ? `; from server CPU per request: ${fmt.ratio(median(cpuRatios.get(r)!))}` : ''),
      ),
    );
  return {
    id: 'overhead',
    title: 'Overhead',
    setup:
      `Three zero-delay async tasks per request (\`async () => value\`), ${connections} connections; servers pinned to ` +
      `CPU 0 and the load generator to CPU 1 where taskset works. All variants' ` +
      `servers run side by side; ${plan.overheadRounds} round(s) of ${plan.overheadDurationS} s per variant, taking turns ` +
      `in a rotating order. req/s is the median round; the ratio is the median of each round's req/s over Promise.all's in the same round.`,
    variants: runs,
    tables: [
      {
        columns: [
          'variant',
          'req/s',
          'ratio to Promise.all',
          'ratio range over rounds',
          'p50 ms',
          'p99 ms',
          'server CPU µs / request',
          'ratio from CPU / request',
          'server CPU',
          'load generator CPU',
          'errors + non-2xx',
        ],
        rows: runs.map((r) => [
          r.label,
          ...(r.load
            ? [
                fmt.rps(r.load.rps),
                ratios.has(r) ? fmt.ratio(median(ratios.get(r)!)) : '—',
                range(ratios.get(r)),
                fmt.ms(r.load.latency.p50),
                fmt.ms(r.load.latency.p99),
                fmt.ms(cpuPerRequest(r)),
                cpuRatios.has(r) ? fmt.ratio(median(cpuRatios.get(r)!)) : '—',
                r.server ? fmt.pct(r.server.cpuMs / r.server.windowMs) : '—',
                fmt.pct(r.load.generatorCpuMs / (r.load.durationS * 1000)),
                `${rounds.get(r)!.reduce((s, x) => s + x.load.non2xx + x.load.errors, 0)}`,
              ]
            : [skippedCell(r), '', '', '', '', '', '', '', '', '']),
        ]),
      },
    ],
    targets,
    chart: {
      title: `Overhead: 3 zero-delay tasks, ${connections} connections`,
      rows: runs
        .filter((r) => r.load)
        .map((r) => ({
          label: r.label,
          p50: r.load!.latency.p50,
          p99: r.load!.latency.p99,
          note: `${fmt.rps(r.load!.rps)} req/s${ratios.has(r) ? ` (${fmt.ratio(median(ratios.get(r)!))})` : ''}`,
          kind: r.kind,
        })),
    },
    notes: [
      ...runs.filter((r) => r.config).map((r) => `${r.label}: ${r.config}.`),
      ...(ratios.has(runs[0]!)
        ? [
            `Noise check: the constant handler does strictly less work than Promise.all and measured ` +
              `${fmt.ratio(median(ratios.get(runs[0]!)!))} of it (rounds ${range(ratios.get(runs[0]!))}); differences ` +
              'smaller than that spread are within this machine’s noise.',
          ]
        : []),
    ],
  };
}
