// Surge: a healthy downstream (timers of 5, 10 and 20 ms) and 50, 100, 200, 1000 clients in a closed loop, budget
// 1000 ms. Nothing is saturated but the server's own CPU, so a package that sheds here sheds work it could have
// done. The package's defaults and the package with its bounds out of the way, each against hand-written
// Promise.all, on fresh servers in alternating rounds.
import { say } from '../harness/progress';
import { SURGE_OPTIONS, surge } from '../servers/pressure-params';
import { check, fmt, skippedCell } from './format';
import type { Plan } from './plan';
import {
  DEPENDENCY_LIMIT,
  layout,
  median,
  medianRound,
  onFreshServer,
  onGrid,
  pinned,
  type Round,
  settle,
  spread,
  statsTraceTable,
  withBeforeTwins,
  fullRounds,
} from './pressure';
import type { ChartRow, Environment, ScenarioResult, Table, Target, TraceLine, VariantRun } from './types';
import { load } from './variant';

const packaged = (id: string) =>
  id in SURGE_OPTIONS ? SURGE_OPTIONS[id as keyof typeof SURGE_OPTIONS] : undefined;
const configOf = (id: string): string | undefined => {
  const variant = packaged(id);
  if (!variant) return undefined;
  const options = JSON.stringify({ budgetMs: surge.budgetMs, ...variant.options }).replace(
    /"(\w+)":/g,
    '$1: ',
  );
  return `fanout(${options})${variant.signal ? ', tasks pass ctx.signal' : ', tasks ignore ctx.signal'}`;
};

export async function surgeScenario(plan: Plan, env: Environment): Promise<ScenarioResult> {
  const p = plan.quick
    ? { clients: [50, 200], rounds: 1, warmupS: 1, durationS: 2 }
    : { clients: [...surge.clients], rounds: fullRounds(), warmupS: 1, durationS: 4 };
  const make = (id: string, label: string, kind: VariantRun['kind']): VariantRun => {
    const config = configOf(id);
    return { id, label, kind, ...(config ? { config } : {}) };
  };
  const runs: VariantRun[] = [
    make('promise-all', 'Promise.all', 'baseline'),
    make('promise-all-abort', 'Promise.all + a deadline that aborts', 'baseline'),
    make('defaults', 'defaults', 'package'),
    make('defaults-no-signal', 'defaults, tasks ignore the signal', 'package'),
    make('no-limits', 'bounds out of the way', 'package'),
  ];
  const roots = withBeforeTwins(runs);
  const rounds = new Map<string, Round[]>();
  const key = (run: VariantRun, clients: number): string => `${run.id}@${clients}`;

  const cpus = await pinned('surge', async (cpus) => {
    for (const clients of p.clients) {
      for (let round = 0; round < p.rounds; round++) {
        // The order rotates each round, so no variant always runs first (or right after the heaviest).
        const order = runs.map((_, i) => runs[(i + round) % runs.length]!);
        for (const run of order) {
          await onFreshServer(run, 'surge', env, roots, cpus, async (server) => {
            await load(server, `${run.label} warm-up`, {
              path: '/',
              connections: 10,
              durationS: p.warmupS,
            });
            await settle();
            const idle = await server.numbers(true);
            const result = await load(server, `${run.label}, ${clients} clients, round ${round + 1}`, {
              path: '/',
              connections: clients,
              instances: Math.min(10, clients),
              durationS: p.durationS,
            });
            const after = await server.numbers();
            const list = rounds.get(key(run, clients)) ?? [];
            list.push({
              load: result,
              server: after ? { ...after, ...(idle ? { idleRss: idle.rss } : {}) } : undefined,
            });
            rounds.set(key(run, clients), list);
            say(
              `    ${clients} clients, ${run.label}: ${fmt.rps(result.okRps)} 2xx/s, non-2xx ${fmt.pct(
                result.non2xx / Math.max(1, result.responses),
              )}, p99 ${fmt.ms(result.latency.p99)} ms` +
                (after?.series?.['stats.limit']
                  ? `, limit at the end ${fmt.ms(after.series['stats.limit'].at(-1))}`
                  : ''),
            );
          });
        }
      }
    }
    return cpus;
  });

  const baseline = runs.find((r) => r.id === 'promise-all')!;
  /** The hand-written variant a package variant is held against: the one that cancels its calls as it does. */
  const baselineOf = (run: VariantRun): VariantRun =>
    runs.find((r) => r.id === (packaged(run.id)?.baseline ?? 'promise-all'))!;
  /** Paired per round: the variant's req/s over its like-for-like Promise.all's in the same round. */
  const ratios = (run: VariantRun, clients: number): number[] => {
    const mine = rounds.get(key(run, clients)) ?? [];
    const theirs = rounds.get(key(baselineOf(run), clients)) ?? [];
    return mine.map((r, i) => (theirs[i] ? r.load.okRps / theirs[i].load.okRps : Number.NaN));
  };
  const non2xx = (r: Round): number => (r.load.non2xx + r.load.errors) / Math.max(1, r.load.responses);
  const lastOf = (r: Round, name: string): number => {
    const v = r.server?.series?.[name]?.at(-1);
    return typeof v === 'number' ? v : Number.NaN;
  };

  const mainTable: Table = {
    columns: [
      'clients',
      'variant',
      '2xx/s',
      '2xx/s ratio to the Promise.all that cancels alike (paired)',
      'non-2xx + errors',
      '503 count',
      'p50 ms',
      'p99 ms',
      'p99 in server ms',
      'limit at the end',
      'shed (stats)',
      'door shed (stats)',
    ],
    rows: p.clients.flatMap((clients) =>
      runs.map((run) => {
        const list = rounds.get(key(run, clients)) ?? [];
        if (list.length === 0)
          return [String(clients), run.label, skippedCell(run), '', '', '', '', '', '', '', '', ''];
        return [
          String(clients),
          run.label,
          spread(
            list.map((r) => r.load.okRps),
            fmt.rps,
          ),
          run.kind === 'baseline'
            ? run === baseline
              ? '1.000×'
              : `${spread(ratios(run, clients), fmt.ratio)} of Promise.all`
            : `${spread(ratios(run, clients), fmt.ratio)} of ${baselineOf(run).label}`,
          spread(list.map(non2xx), fmt.pct),
          String(median(list.map((r) => r.load.byStatus['503']?.count ?? 0))),
          spread(
            list.map((r) => r.load.latency.p50),
            fmt.ms,
          ),
          spread(
            list.map((r) => r.load.latency.p99),
            fmt.ms,
          ),
          spread(
            list.map((r) => r.server?.latency['200']?.p99 ?? NaN),
            fmt.ms,
          ),
          run.kind === 'baseline'
            ? '—'
            : spread(
                list.map((r) => lastOf(r, 'stats.limit')),
                fmt.ms,
              ),
          run.kind === 'baseline'
            ? '—'
            : spread(
                list.map((r) => lastOf(r, 'stats.shed')),
                (v) => String(Math.round(v)),
              ),
          // The door's own sheds, where the package has one (`stats().eventLoop.shed`).
          run.kind === 'baseline'
            ? '—'
            : spread(
                list.map((r) => lastOf(r, 'stats.eventLoop.shed')),
                (v) => String(Math.round(v)),
              ),
        ];
      }),
    ),
  };

  const defaults = runs.find((r) => r.id === 'defaults')!;
  const withoutSignal = runs.find((r) => r.id === 'defaults-no-signal')!;
  const targets: Target[] = [];
  for (const clients of [200, 1000].filter((c) => p.clients.includes(c))) {
    const plain = median(ratios(withoutSignal, clients));
    targets.push(
      check(
        'surge',
        withoutSignal,
        `${clients} clients: 2xx/s ≥ 0.85 × Promise.all's (median of paired rounds)`,
        (rounds.get(key(withoutSignal, clients)) ?? []).length ? plain : undefined,
        (v) => v >= 0.85,
        (v) => `${fmt.ratio(v)} (${spread(ratios(withoutSignal, clients), fmt.ratio)})`,
      ),
    );
    const list = rounds.get(key(defaults, clients)) ?? [];
    const ratio = median(ratios(defaults, clients));
    const bad = median(list.map(non2xx));
    const p99 = median(list.map((r) => r.load.latency.p99));
    targets.push(
      check(
        'surge',
        defaults,
        `${clients} clients: 2xx/s ≥ 0.85 × Promise.all + a deadline that aborts (median of paired rounds)`,
        list.length ? ratio : undefined,
        (v) => v >= 0.85,
        (v) => `${fmt.ratio(v)} (${spread(ratios(defaults, clients), fmt.ratio)})`,
      ),
      check(
        'surge',
        defaults,
        `${clients} clients: non-2xx ≤ 1 %`,
        list.length ? bad : undefined,
        (v) => v <= 0.01,
        (v) => `${fmt.pct(v)} (${spread(list.map(non2xx), fmt.pct)})`,
      ),
      check(
        'surge',
        defaults,
        `${clients} clients: p99 ≤ the budget (${surge.budgetMs} ms)`,
        list.length ? p99 : undefined,
        (v) => v <= surge.budgetMs,
        (v) => `${fmt.ms(v)} ms`,
      ),
    );
  }

  // The stats() trace of the defaults at 200 clients (the median round by req/s), every 0.5 s.
  const traceClients = p.clients.includes(200) ? 200 : p.clients.at(-1)!;
  const traced = medianRound(rounds.get(key(defaults, traceClients)) ?? [], (r) => r.load.okRps);
  const traceTable = statsTraceTable(traced?.server, [
    /^stats\.limit$/,
    DEPENDENCY_LIMIT,
    /^stats\.shed$/,
    /^stats\.(?:door|eventLoop)[\w.]*$/i,
    /^stats\.[\w.]*door[\w.]*$/i,
    /^stats\.queued$/,
    /^stats\.running$/,
  ]);
  const tables = [mainTable];
  if (traceTable) tables.push(traceTable);

  const lines: TraceLine[] = [];
  for (const clients of [traceClients, 1000].filter(
    (c, i, a) => p.clients.includes(c) && a.indexOf(c) === i,
  )) {
    const r = medianRound(rounds.get(key(defaults, clients)) ?? [], (x) => x.load.okRps);
    const series = r?.server?.series;
    if (!series?.elapsedMs) continue;
    if (series['stats.limit'])
      lines.push({
        label: `limit, ${clients} clients`,
        values: onGrid(series['stats.limit'], series.elapsedMs),
      });
    if (clients === traceClients) {
      for (const [name, values] of Object.entries(series)) {
        const m = DEPENDENCY_LIMIT.exec(name);
        if (m)
          lines.push({
            label: `${m[1]} limit, ${clients} clients`,
            values: onGrid(values, series.elapsedMs),
          });
      }
    }
  }

  const chartRows: ChartRow[] = p.clients.flatMap((clients) =>
    runs.flatMap((run): ChartRow[] => {
      const r = medianRound(rounds.get(key(run, clients)) ?? [], (x) => x.load.okRps);
      if (!r) return [];
      return [
        {
          label: `${clients} clients, ${run.label}`,
          p50: r.load.latency.p50,
          p99: r.load.latency.p99,
          note: `${fmt.rps(r.load.okRps)} 2xx/s, ${fmt.pct(non2xx(r))} non-2xx`,
          kind: run.kind,
        },
      ];
    }),
  );
  // The chart and the JSON keep one representative round per variant (the median of its 200-client rounds).
  for (const run of runs) {
    const r = medianRound(rounds.get(key(run, traceClients)) ?? [], (x) => x.load.okRps);
    if (r) {
      run.load = r.load;
      if (r.server) run.server = r.server;
    }
    run.rounds = p.clients.map((c) => median((rounds.get(key(run, c)) ?? []).map((x) => x.load.okRps)));
  }

  return {
    id: 'surge',
    title: 'Surge on a healthy downstream',
    setup:
      `Each request: three in-process timers (${surge.timersMs.join(', ')} ms), budget ${surge.budgetMs} ms. ` +
      `${p.clients.join(', ')} clients in a closed loop (autocannon, split over up to 10 instances started over a ` +
      `second), ${p.durationS} s a round after a ${p.warmupS} s warm-up at 10 connections, ${p.rounds} round(s); each ` +
      'round starts every variant on a fresh server, the order rotating. The downstream is never the bottleneck: ' +
      `the server's CPU is. ${layout(cpus)} Values: median [min–max] of the rounds; the ratio (2xx/s over Promise.all's) is paired per round.`,
    variants: runs,
    tables,
    targets,
    chart: {
      title: 'Surge: closed loop on a healthy downstream',
      rows: chartRows,
      reference: { value: surge.budgetMs, label: `budget ${surge.budgetMs} ms` },
    },
    ...(lines.length
      ? {
          traces: {
            title: `Surge: the defaults' limits over time (${traceClients} and 1000 clients)`,
            stepS: 0.1,
            yLabel: 'tasks',
            lines,
          },
        }
      : {}),
    notes: [
      `The second table is the defaults' \`stats()\` at ${traceClients} clients every 0.5 s (the round with the median ` +
        "req/s), read defensively: per-dependency limits and the door's counters appear only where the package has them.",
      '"bounds out of the way": the package with `concurrency` and `maxQueue` at 100,000, to tell what the package ' +
        'itself costs from what its overload controls cost.',
      'Cancellation is compared like for like. Where the tasks hand `ctx.signal` to their calls (as they should), ' +
        "each call listens to an AbortSignal, which costs Node's EventTarget ~12 µs a call (more with a signal per " +
        'call than with one a request): the ratio is to a hand-written Promise.all with a per-request deadline that ' +
        'aborts its calls. "tasks ignore the signal" is held against the plain Promise.all.',
    ],
  };
}
