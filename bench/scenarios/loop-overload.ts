// Loop overload: three 10 ms IO tasks, then about 4 ms of CPU on the event loop itself, offered three times what the
// loop can do (measured first, in the same run, on hand-written Promise.all). Here the loop is the queue: the
// package should shed what cannot finish, and keep what can.
import { say } from '../harness/progress';
import { loopOverload } from '../servers/pressure-params';
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

export async function loopOverloadScenario(plan: Plan, env: Environment): Promise<ScenarioResult> {
  const p = plan.quick
    ? { rounds: 1, warmupS: 1, durationS: 3, capacityS: 2 }
    : { rounds: fullRounds(), warmupS: 2, durationS: 6, capacityS: 4 };
  const { budgetMs } = loopOverload;
  const runs: VariantRun[] = [
    { id: 'promise-all', label: 'Promise.all, unbounded', kind: 'baseline' },
    { id: 'defaults', label: 'defaults', kind: 'package', config: `fanout({ budgetMs: ${budgetMs} })` },
  ];
  const capacityRun: VariantRun = {
    id: 'promise-all',
    label: 'loop capacity (closed loop)',
    kind: 'baseline',
  };
  const roots = withBeforeTwins(runs);
  const rounds = new Map<VariantRun, Round[]>(runs.map((r) => [r, []]));
  const capacities: number[] = [];
  let perMs = Number.NaN;
  let offered = 0;

  /** The loop's capacity: 2xx/s of Promise.all from 30 connections in a closed loop. */
  const measureCapacity = async (cpus: string | undefined, when: string): Promise<void> => {
    await onFreshServer(capacityRun, 'loop-overload', env, new Map(), cpus, async (server) => {
      await load(server, `capacity warm-up (${when})`, { path: '/', connections: 10, durationS: 1 });
      const result = await load(server, `capacity (${when})`, {
        path: '/',
        connections: 30,
        durationS: p.capacityS,
      });
      capacities.push(result.okRps);
      say(
        `    loop capacity (${when}): ${fmt.rps(result.okRps)} req/s, p99 ${fmt.ms(result.latency.p99)} ms`,
      );
    });
  };

  const cpus = await pinned('loop-overload', async (cpus) => {
    perMs = calibrateBurn();
    say(`    burn(): ${Math.round(perMs).toLocaleString('en-US')} iterations a ms on the load CPU`);
    await measureCapacity(cpus, 'before');
    if (!capacities[0]) {
      for (const run of runs) run.skipped = 'the loop answered no 2xx while its capacity was measured';
      return cpus;
    }
    offered = Math.round(loopOverload.overload * capacities[0]);
    for (let round = 0; round < p.rounds; round++) {
      const order = runs.map((_, i) => runs[(i + round) % runs.length]!);
      for (const run of order) {
        await onFreshServer(run, 'loop-overload', env, roots, cpus, async (server) => {
          await load(server, `${run.label} warm-up`, {
            path: '/',
            connections: 20,
            rate: Math.max(1, Math.round(capacities[0]! / 3)),
            durationS: p.warmupS,
          });
          await settle(500);
          const idle = await server.numbers(true);
          const result = await load(server, `${run.label} at ${offered} req/s, round ${round + 1}`, {
            path: '/',
            connections: 300,
            rate: offered,
            instances: 30,
            durationS: p.durationS,
          });
          const after = await server.numbers();
          const measured: Round = {
            load: result,
            server: after ? { ...after, ...(idle ? { idleRss: idle.rss } : {}) } : undefined,
          };
          rounds.get(run)!.push(measured);
          const rate = windowRate(measured.server, 'ok', 1, p.durationS, result.okRps);
          const s503 = result.byStatus['503'];
          say(
            `    ${run.label}: 2xx ${fmt.rps(rate)}/s (${fmt.ratio(rate / capacities[0]!)} of capacity), ` +
              `2xx p99 ${fmt.ms(result.okLatency.p99)} ms` +
              (s503 ? `, 503 ${fmt.pct(shareOf(result, '503'))} (p99 ${fmt.ms(s503.p99)} ms)` : ''),
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
      '2xx p50 ms',
      '2xx p99 ms',
      '2xx p99 in server ms',
      '503 share',
      '503 p99 ms',
      '503 p99 in server ms',
      '504 share',
      'errors (timeouts)',
      'server event-loop delay p99 ms',
      'peak / idle RSS',
    ],
    rows: runs.map((run) => {
      const list = rounds.get(run)!;
      if (list.length === 0) return [run.label, skippedCell(run), '', '', '', '', '', '', '', '', '', '', ''];
      return [
        run.label,
        spread(list.map(okRate), fmt.rps),
        spread(list.map(answered), fmt.ratio),
        spread(
          list.map((r) => r.load.okLatency.p50),
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
          list.map((r) => shareOf(r.load, '503')),
          fmt.pct,
        ),
        spread(
          list.map((r) => r.load.byStatus['503']?.p99 ?? NaN),
          fmt.ms,
        ),
        spread(
          list.map((r) => r.server?.latency['503']?.p99 ?? NaN),
          fmt.ms,
        ),
        spread(
          list.map((r) => shareOf(r.load, '504')),
          fmt.pct,
        ),
        String(median(list.map((r) => r.load.errors))),
        spread(
          list.map((r) => r.server?.eventLoopDelay.p99 ?? NaN),
          fmt.ms,
        ),
        rssCell(list),
      ];
    }),
  };

  const defaults = runs.find((r) => r.id === 'defaults')!;
  const list = rounds.get(defaults)!;
  const targets: Target[] = [
    check(
      'loop-overload',
      defaults,
      '2xx/s ≥ 0.8 × the loop’s measured capacity',
      list.length ? median(list.map(answered)) : undefined,
      (v) => v >= 0.8,
      (v) => `${fmt.ratio(v)} (${spread(list.map(answered), fmt.ratio)}) of ${fmt.rps(capacity)} req/s`,
    ),
    check(
      'loop-overload',
      defaults,
      `2xx p99 ≤ budget + 15 ms (${budgetMs + 15} ms)`,
      list.length ? median(list.map((r) => r.load.okLatency.p99)) : undefined,
      (v) => v <= budgetMs + 15,
      (v) =>
        `${fmt.ms(v)} ms; 503 p99 ${spread(
          list.map((r) => r.load.byStatus['503']?.p99 ?? NaN),
          fmt.ms,
        )} ms`,
    ),
    check(
      'loop-overload',
      defaults,
      'peak RSS ≤ 1.5 × the idle server’s',
      list.length ? median(list.map(rssRatio)) : undefined,
      (v) => v <= 1.5,
      (v) => `${fmt.ratio(v)} (${rssCell(list)})`,
    ),
  ];

  const traced = medianRound(list, answered);
  const lines = [
    ...traceLines(traced?.server, /^stats\.(limit)$/, () => 'defaults: process-wide limit'),
    ...traceLines(traced?.server, /^stats\.dependencies\.(.+)\.limit$/, (dep) => `defaults: ${dep} limit`),
    ...traceLines(traced?.server, /^stats\.(queued)$/, () => 'defaults: tasks queued'),
  ];
  const traceTable = statsTraceTable(traced?.server, [
    /^stats\.limit$/,
    /^stats\.dependencies\.[^.]+\.limit$/,
    /^stats\.shed$/,
    /^stats\.queued$/,
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
    id: 'loop-overload',
    title: 'The event loop at 3× its capacity',
    setup:
      `Each request: three ${loopOverload.ioMs} ms IO tasks, then burn(${Math.round(perMs * loopOverload.cpuMs).toLocaleString('en-US')}) ` +
      `on the event loop (about ${loopOverload.cpuMs} ms, calibrated in this run); budget ${budgetMs} ms. The loop's ` +
      `capacity is measured on Promise.all (30 connections, closed loop, ${p.capacityS} s) first and again at the end: ` +
      `${capacities.map((c) => fmt.rps(c)).join(' then ')} req/s; the ratios use their median. Offered ${offered} req/s ` +
      `(${loopOverload.overload}× the first) from 300 connections (30 instances), ${p.durationS} s a round after a ` +
      `${p.warmupS} s warm-up at a third of capacity, ${p.rounds} round(s), fresh servers, rotating order. ` +
      `${layout(cpus)} Values: median [min–max] of the rounds.`,
    variants: [...runs],
    tables,
    targets,
    chart: {
      title: `Loop overload: ${offered} req/s offered to a loop of ${fmt.rps(capacity)} req/s`,
      rows: chartRows,
      reference: { value: budgetMs, label: `budget ${budgetMs} ms` },
    },
    ...(lines.length
      ? {
          traces: {
            title: 'Loop overload: the defaults over time (the median round), sampled every 100 ms',
            stepS: 0.1,
            yLabel: 'tasks',
            lines,
          },
        }
      : {}),
    notes: [
      '"In server": from the app\'s first middleware to the response\'s finish, inside the server process. The gap ' +
        "to the client's latency is time spent before the app saw the request (sockets, the loop's backlog): the " +
        "budget starts when the middleware sees the request, so only a door that sheds early bounds the client's wait.",
      'Promise.all has no bound: its queue is the event loop and the sockets, and its latency grows with the ' +
        'backlog; autocannon gives up on a request after 10 s (errors).',
    ],
  };
}
