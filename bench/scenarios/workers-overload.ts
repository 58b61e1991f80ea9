// Workers overload: each request is one CPU step of about 10 ms on the package's worker threads, offered three
// times what the pool can do (measured first, in the same run). The defaults next to a worker queue tuned by hand
// (`workers.maxQueueSize: 4`): a worker call that cannot finish in time should be a fast 503, not a late 504.
import type { LoadResult } from '../harness/load';
import { say } from '../harness/progress';
import { WORKERS_OPTIONS, workersOverload } from '../servers/pressure-params';
import { check, fmt, skippedCell } from './format';
import type { Plan } from './plan';
import {
  calibrateBurn,
  layout,
  median,
  medianRound,
  onFreshServer,
  pinned,
  type Round,
  rssCell,
  rssRatio,
  settle,
  shareOf,
  spread,
  statsTraceTable,
  traceLines,
  windowRate,
  withBeforeTwins,
  fullRounds,
} from './pressure';
import type { ChartRow, Environment, ScenarioResult, Table, Target, VariantRun } from './types';
import { load } from './variant';

export async function workersOverloadScenario(plan: Plan, env: Environment): Promise<ScenarioResult> {
  const p = plan.quick
    ? { rounds: 1, warmupS: 1, durationS: 3, capacityS: 2 }
    : { rounds: fullRounds(), warmupS: 2, durationS: 6, capacityS: 4 };
  const { budgetMs } = workersOverload;
  const runs: VariantRun[] = (['defaults', 'tuned-queue-4'] as const).map((id) => ({
    id,
    label: id === 'defaults' ? 'defaults' : 'hand-tuned: workers.maxQueueSize 4',
    kind: 'package',
    config: `fanout(${JSON.stringify({ budgetMs, workers: { script: 'cpu-worker.js', ...WORKERS_OPTIONS[id] } })})`,
  }));
  const capacityRun: VariantRun = { id: 'defaults', label: 'pool capacity (closed loop)', kind: 'package' };
  const roots = withBeforeTwins(runs);
  const rounds = new Map<VariantRun, Round[]>(runs.map((r) => [r, []]));
  const capacities: number[] = [];
  let perMs = Number.NaN;
  let offered = 0;

  /**
   * The pool's capacity: 2xx/s from 2 connections in a closed loop, one a thread of the default pool (2 on this
   * machine), so no call waits behind another: on a crowded core a 10 ms step can take 100 ms of wall time, and a
   * call queued behind one would already meet the budget.
   */
  const measureCapacity = async (cpus: string | undefined, when: string): Promise<void> => {
    await onFreshServer(capacityRun, 'workers-overload', env, new Map(), cpus, async (server) => {
      // Long enough for the threads to start (each loads the worker script) before the measured window.
      await load(server, `capacity warm-up (${when})`, { path: '/', connections: 2, durationS: 2 });
      const result = await load(server, `capacity (${when})`, {
        path: '/',
        connections: 2,
        durationS: p.capacityS,
      });
      capacities.push(result.okRps);
      say(
        `    pool capacity (${when}): ${fmt.rps(result.okRps)} req/s, p99 ${fmt.ms(result.latency.p99)} ms, ` +
          `non-2xx ${result.non2xx} (${Object.keys(result.byStatus).join(', ')})`,
      );
    });
  };

  const cpus = await pinned('workers-overload', async (cpus) => {
    perMs = calibrateBurn();
    say(`    burn(): ${Math.round(perMs).toLocaleString('en-US')} iterations a ms on the load CPU`);
    await measureCapacity(cpus, 'before');
    if (!capacities[0]) {
      for (const run of runs) run.skipped = 'the pool answered no 2xx while its capacity was measured';
      return cpus;
    }
    offered = Math.round(workersOverload.overload * capacities[0]);
    for (let round = 0; round < p.rounds; round++) {
      const order = runs.map((_, i) => runs[(i + round) % runs.length]!);
      for (const run of order) {
        await onFreshServer(run, 'workers-overload', env, roots, cpus, async (server) => {
          await load(server, `${run.label} warm-up`, {
            path: '/',
            connections: 10,
            rate: Math.max(1, Math.round(capacities[0]! / 3)),
            durationS: p.warmupS,
          });
          await settle(500);
          const idle = await server.numbers(true);
          const result = await load(server, `${run.label} at ${offered} req/s, round ${round + 1}`, {
            path: '/',
            connections: 150,
            rate: offered,
            instances: 15,
            durationS: p.durationS,
          });
          const after = await server.numbers();
          const measured: Round = {
            load: result,
            server: after ? { ...after, ...(idle ? { idleRss: idle.rss } : {}) } : undefined,
          };
          rounds.get(run)!.push(measured);
          const rate = windowRate(measured.server, 'ok', 1, p.durationS, result.okRps);
          say(
            `    ${run.label}: 2xx ${fmt.rps(rate)}/s (${fmt.ratio(rate / capacities[0]!)} of capacity), ` +
              `503 ${fmt.pct(shareOf(result, '503'))}, 504 ${fmt.pct(shareOf(result, '504'))}, p99 of every answer ${fmt.ms(result.latency.p99)} ms`,
          );
        });
      }
    }
    await measureCapacity(cpus, 'after');
    return cpus;
  });

  const capacity = median(capacities);
  /** 2xx/s inside the offered window (from 1 s, once every load instance has started, to its end). */
  const okRate = (r: Round): number => windowRate(r.server, 'ok', 1, p.durationS, r.load.okRps);
  const answered = (r: Round): number => okRate(r) / capacity;
  const table: Table = {
    columns: [
      'variant',
      '2xx/s in the offered window',
      'answered / capacity',
      '503 share',
      '504 share',
      'p99 every answer ms',
      '2xx p99 ms',
      '2xx p99 in server ms',
      '503 p99 ms',
      '504 p99 ms',
      'other non-2xx + errors',
      'peak / idle RSS',
    ],
    rows: runs.map((run) => {
      const list = rounds.get(run)!;
      if (list.length === 0) return [run.label, skippedCell(run), '', '', '', '', '', '', '', '', '', ''];
      const other = (l: LoadResult): number =>
        Object.entries(l.byStatus)
          .filter(([code]) => !code.startsWith('2') && code !== '503' && code !== '504')
          .reduce((s, [, x]) => s + x.count, 0) + l.errors;
      return [
        run.label,
        spread(list.map(okRate), fmt.rps),
        spread(list.map(answered), fmt.ratio),
        spread(
          list.map((r) => shareOf(r.load, '503')),
          fmt.pct,
        ),
        spread(
          list.map((r) => shareOf(r.load, '504')),
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
          list.map((r) => r.server?.latency['200']?.p99 ?? NaN),
          fmt.ms,
        ),
        spread(
          list.map((r) => r.load.byStatus['503']?.p99 ?? NaN),
          fmt.ms,
        ),
        spread(
          list.map((r) => r.load.byStatus['504']?.p99 ?? NaN),
          fmt.ms,
        ),
        String(median(list.map((r) => other(r.load)))),
        rssCell(list),
      ];
    }),
  };

  const defaults = runs.find((r) => r.id === 'defaults')!;
  const list = rounds.get(defaults)!;
  const targets: Target[] = [
    check(
      'workers-overload',
      defaults,
      '2xx/s ≥ 0.8 × the pool’s measured capacity',
      list.length ? median(list.map(answered)) : undefined,
      (v) => v >= 0.8,
      (v) => `${fmt.ratio(v)} (${spread(list.map(answered), fmt.ratio)}) of ${fmt.rps(capacity)} req/s`,
    ),
    check(
      'workers-overload',
      defaults,
      `p99 of every answer ≤ budget + 15 ms (${budgetMs + 15} ms)`,
      list.length ? median(list.map((r) => r.load.latency.p99)) : undefined,
      (v) => v <= budgetMs + 15,
      (v) => `${fmt.ms(v)} ms; ${fmt.pct(median(list.map((r) => shareOf(r.load, '504'))))} 504`,
    ),
    check(
      'workers-overload',
      defaults,
      'peak RSS ≤ 1.5 × the idle server’s',
      list.length ? median(list.map(rssRatio)) : undefined,
      (v) => v <= 1.5,
      (v) => `${fmt.ratio(v)} (${rssCell(list)})`,
    ),
  ];

  const traced = medianRound(list, answered);
  const tuned = medianRound(rounds.get(runs.find((r) => r.id === 'tuned-queue-4')!)!, answered);
  const lines = [
    ...traceLines(traced?.server, /^stats\.workers\.(pending)$/, () => 'defaults: worker calls waiting'),
    ...traceLines(traced?.server, /^stats\.workers\.(busy)$/, () => 'defaults: worker calls running'),
    ...traceLines(tuned?.server, /^stats\.workers\.(pending)$/, () => 'maxQueueSize 4: worker calls waiting'),
    ...traceLines(traced?.server, /^stats\.(limit)$/, () => 'defaults: IO limit'),
  ];
  const traceTable = statsTraceTable(traced?.server, [
    /^stats\.workers\.\w+$/,
    /^stats\.shed$/,
    /^stats\.timedOut$/,
    /^stats\.[\w.]*(?:door|eventLoop)[\w.]*$/i,
  ]);
  const tables = [table];
  if (traceTable) tables.push(traceTable);

  const chartRows: ChartRow[] = runs.flatMap((run): ChartRow[] => {
    const r = medianRound(rounds.get(run)!, answered);
    if (!r) return [];
    run.load = r.load;
    if (r.server) run.server = r.server;
    return Object.entries(r.load.byStatus).map(([code, x]) => ({
      label: `${run.label}, ${code}`,
      p50: x.p50,
      p99: x.p99,
      note: `${fmt.pct(x.count / Math.max(1, r.load.responses))} of answers`,
      kind: run.kind,
    }));
  });

  return {
    id: 'workers-overload',
    title: 'Worker threads at 3× their capacity',
    setup:
      `Each request: \`req.fanout.worker('burn', [n])\`, n = ${Math.round(perMs * workersOverload.stepMs).toLocaleString('en-US')} ` +
      `iterations (about ${workersOverload.stepMs} ms of one core, calibrated in this run), budget ${budgetMs} ms, the ` +
      `default pool size. The pool's capacity is measured first on the defaults (2 connections, one a thread, closed loop, ` +
      `${p.capacityS} s) and again at the end: ${capacities.map((c) => fmt.rps(c)).join(' then ')} req/s; the ratios use ` +
      `their median. Offered ${offered} req/s (${workersOverload.overload}× the first) from 150 connections (15 ` +
      `instances), ${p.durationS} s a round after a ${p.warmupS} s warm-up at a third of capacity, ${p.rounds} round(s), ` +
      `fresh servers, rotating order. ${layout(cpus)} Values: median [min–max] of the rounds.`,
    variants: [...runs],
    tables,
    targets,
    chart: {
      title: `Workers: ${offered} req/s offered to a pool of ${fmt.rps(capacity)} req/s`,
      rows: chartRows,
      reference: { value: budgetMs, label: `budget ${budgetMs} ms` },
    },
    ...(lines.length
      ? {
          traces: {
            title: 'Workers: the worker queue over time (the median round), sampled every 100 ms',
            stepS: 0.1,
            yLabel: 'calls',
            lines,
          },
        }
      : {}),
    notes: [
      "With the server pinned to one core, the worker threads share that core with the event loop: the pool's " +
        "capacity is about one core's worth of 10 ms steps, whatever the number of threads.",
    ],
  };
}
