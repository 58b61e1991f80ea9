// Scenario 4, overload: three times what a downstream of hidden capacity can serve. The package with its defaults
// (nothing tells it the capacity), next to hand-tuned settings and an unbounded Promise.all; then a step change
// (the capacity halves mid-run and recovers) to show the adaptive limit following it.
import { performance } from 'node:perf_hooks';
import type { LoadResult } from '../harness/load';
import { say } from '../harness/progress';
import { SERIES_INTERVAL_MS } from '../harness/protocol';
import { affinity, pin } from '../harness/server-process';
import { OVERLOAD_OPTIONS, overload, type OverloadVariant } from '../servers/params';
import { besides, check, fmt, inServer, skippedCell } from './format';
import type { Plan } from './plan';
import type { ChartRow, Environment, ScenarioResult, Table, Target, TraceLine, VariantRun } from './types';
import { load, skipPackage, withServer } from './variant';

const SERVER_CPU = '0';
const LOAD_CPU = '1';

const configOf = (id: OverloadVariant): string | undefined => {
  if (id === 'unbounded') return undefined;
  const options = { budgetMs: overload.budgetMs, ...OVERLOAD_OPTIONS[id] };
  return `fanout(${JSON.stringify(options).replace(/"(\w+)":/g, '$1: ')})`;
};

const median = (values: number[]): number => {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
  return finite.length ? finite[Math.floor(finite.length / 2)]! : Number.NaN;
};

/** The first sample index at or after `ms` since the reset (samples are 100 ms apart only on an idle loop). */
const at = (elapsed: number[], ms: number): number => {
  const i = elapsed.findIndex((t) => t >= ms);
  return i === -1 ? elapsed.length - 1 : i;
};

/** 2xx per second from the server's cumulative `ok` samples, between two sample indexes. */
const okRate = (ok: number[] | undefined, elapsed: number[], a: number, b: number): number => {
  if (!ok || b <= a) return Number.NaN;
  return ((ok[b]! - ok[a]!) * 1000) / (elapsed[b]! - elapsed[a]!);
};

/** A series on a regular grid of `SERIES_INTERVAL_MS` (the latest sample at or before each point). */
const onGrid = (values: number[], elapsed: number[]): number[] => {
  const out: number[] = [];
  let i = 0;
  for (let t = 0; t <= (elapsed.at(-1) ?? 0); t += SERIES_INTERVAL_MS) {
    while (i + 1 < elapsed.length && elapsed[i + 1]! <= t) i++;
    out.push(values[i] ?? Number.NaN);
  }
  return out;
};

export async function overloadScenario(plan: Plan, env: Environment): Promise<ScenarioResult> {
  const connections = 300;
  const capacity = (overload.capacity * 1000) / overload.callMs / overload.callsPerRequest;
  const offered = Math.round(3 * capacity);
  // autocannon paces a rate in one-second windows per connection, all opening together: spread over 30
  // instances, arrivals come in small groups every 33 ms instead of one burst of 300 connections a second.
  const overloadInstances = 30;
  const variant = (id: OverloadVariant, label: string, kind: VariantRun['kind']): VariantRun => {
    const config = configOf(id);
    return { id, label, kind, ...(config ? { config } : {}) };
  };
  const runs: VariantRun[] = [
    variant('unbounded', 'Promise.all, unbounded', 'baseline'),
    variant('defaults', 'defaults', 'package'),
    variant('fixed-256', 'concurrency 256 (fixed)', 'package'),
    variant('tuned-32-1024', 'hand-tuned: concurrency 32, maxQueue 1024', 'package'),
    variant('tuned-32-64', 'hand-tuned: concurrency 32, maxQueue 64', 'package'),
    variant('lifo', 'defaults + adaptive LIFO', 'package'),
  ];
  // BENCH_BEFORE_ROOT=/path/to/an/older/checkout (built, with this bench/ copied in): each package variant also
  // runs from there, right before this one, so before and after are measured side by side in one run.
  const beforeRoot = process.env.BENCH_BEFORE_ROOT;
  const roots = new Map<VariantRun, string>();
  if (beforeRoot) {
    for (const run of runs.filter((r) => r.kind === 'package' && r.id !== 'lifo')) {
      const before: VariantRun = { ...run, label: `${run.label} [before]`, kind: 'baseline' };
      roots.set(before, beforeRoot);
      runs.splice(runs.indexOf(run), 0, before);
    }
  }
  const step: VariantRun = {
    ...variant('defaults', 'defaults, capacity 32 → 16 → 32', 'package'),
    id: 'defaults-step',
  };

  // The server on one core, the load generator on the other: the target is about the server.
  const restore = affinity(process.pid);
  const pinned = pin(process.pid, LOAD_CPU);
  say(
    pinned
      ? `  overload: server pinned to CPU ${SERVER_CPU}, load generator to CPU ${LOAD_CPU} (taskset)`
      : '  overload: taskset unavailable, server and load generator share the cores',
  );
  const cpus = pinned ? SERVER_CPU : undefined;
  const phaseS = Math.max(2, Math.round(plan.overloadDurationS / 2));
  /** When the step run's load started, ms after the reset that started its samples. */
  let stepLoadAtMs = 0;
  try {
    for (const run of [...runs, step]) {
      if (!roots.has(run) && skipPackage(run, env)) continue;
      const file = run === step ? 'defaults' : run.id;
      say(`  overload · ${run.label}`);
      const root = roots.get(run);
      const how = {
        node: { file: 'overload', variant: file, ...(cpus ? { cpus } : {}), ...(root ? { root } : {}) },
      };
      await withServer(run, how, async (server) => {
        // Warm (JIT, sockets, the latency estimates) well below capacity, then take the idle RSS.
        await load(server, `${run.label} warm-up`, {
          path: '/',
          connections: 20,
          rate: Math.round(capacity / 3),
          durationS: plan.overloadWarmupS,
        });
        await new Promise((resolve) => setTimeout(resolve, 500));
        const idle = await server.numbers(true);
        const resetAt = performance.now();
        const url = `http://127.0.0.1:${server.port}/control/capacity?n=`;
        const timers =
          run === step
            ? [
                setTimeout(() => void fetch(`${url}${overload.capacity / 2}`), phaseS * 1000),
                setTimeout(() => void fetch(`${url}${overload.capacity}`), 2 * phaseS * 1000),
              ]
            : [];
        if (run === step) stepLoadAtMs = performance.now() - resetAt;
        try {
          run.load = await load(server, `${run.label} at ${offered} req/s offered`, {
            path: '/',
            connections,
            rate: offered,
            instances: overloadInstances,
            durationS: run === step ? 3 * phaseS : plan.overloadDurationS,
          });
        } finally {
          for (const t of timers) clearTimeout(t);
        }
        const after = await server.numbers();
        if (after) run.server = { ...after, ...(idle ? { idleRss: idle.rss } : {}) };
        const s503 = run.load.byStatus['503'];
        say(
          `    2xx ${fmt.rps(run.load.okRps)}/s (${fmt.ratio(run.load.okRps / capacity)} of capacity), ` +
            `p99 ${fmt.ms(run.load.okLatency.p99)} ms` +
            `${s503 ? `; 503s ${s503.count} (p99 ${fmt.ms(s503.p99)} ms, ${fmt.ms(run.server?.latency['503']?.p99)} ms in the server)` : ''}` +
            `; limit ${fmt.ms(median(run.server?.series?.limit ?? []))}`,
        );
      });
    }
  } finally {
    if (pinned && restore) pin(process.pid, restore);
  }

  const budgetLimit = overload.budgetMs + 15;
  const targets: Target[] = [];
  const baseline = runs.find((r) => r.id === 'unbounded');
  const defaults = runs.find((r) => r.id === 'defaults' && !roots.has(r))!;
  {
    const run = defaults;
    const s503 = run.load?.byStatus['503'];
    targets.push(
      check(
        'overload',
        run,
        `2xx/s ≥ 0.8 × the downstream's capacity (${fmt.rps(0.8 * capacity)} req/s)`,
        run.load ? run.load.okRps / capacity : undefined,
        (v) => v >= 0.8,
        (v) =>
          `${fmt.rps(run.load!.okRps)} req/s (${fmt.ratio(v)})` +
          besides(baseline?.load ? baseline.load.okRps / capacity : undefined, fmt.ratio, 'Promise.all'),
      ),
      check(
        'overload',
        run,
        `successful p99 ≤ budget + 15 ms (${budgetLimit} ms)`,
        run.load?.okLatency.p99,
        (v) => v <= budgetLimit,
        (v) => `${fmt.ms(v)} ms${inServer(run.server?.latency['200']?.p99)}`,
      ),
      check(
        'overload',
        run,
        '503s answered in ≤ 5 ms p99 in the server',
        s503 ? run.server?.latency['503']?.p99 : undefined,
        (v) => v <= 5,
        (v) =>
          `${fmt.ms(v)} ms in the server, ${fmt.ms(s503!.p99)} ms at the client; ${s503!.count} 503s, ` +
          `${run.server?.counters.dropped ?? 0} of them dropped from the queue`,
      ),
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
      .filter(([code]) => !code.startsWith('2') && code !== '503' && code !== '504')
      .reduce((s, [, p]) => s + p.count, 0);
  const share = (r: LoadResult, code: string): string =>
    fmt.pct((r.byStatus[code]?.count ?? 0) / Math.max(1, r.responses));

  const mainTable: Table = {
    columns: [
      'variant',
      '2xx/s',
      'share of capacity',
      '2xx p50 ms',
      '2xx p99 ms',
      '2xx p99 in server ms',
      '503 share',
      '503 p50 / p99 ms',
      '503 p99 in server ms',
      '503s dropped from the queue',
      '504 share',
      'other non-2xx + errors',
      'limit (median)',
      'downstream queue peak',
    ],
    rows: runs.map((r) => {
      if (!r.load) return [r.label, skippedCell(r), '', '', '', '', '', '', '', '', '', '', '', ''];
      const s503 = r.load.byStatus['503'];
      return [
        r.label,
        fmt.rps(r.load.okRps),
        fmt.ratio(r.load.okRps / capacity),
        fmt.ms(r.load.okLatency.p50),
        fmt.ms(r.load.okLatency.p99),
        fmt.ms(r.server?.latency['200']?.p99),
        share(r.load, '503'),
        s503 ? `${fmt.ms(s503.p50)} / ${fmt.ms(s503.p99)}` : '—',
        fmt.ms(r.server?.latency['503']?.p99),
        `${r.server?.counters.dropped ?? 0}`,
        share(r.load, '504'),
        `${other(r.load) + r.load.errors}`,
        r.id === 'unbounded' ? '—' : fmt.ms(median(r.server?.series?.limit ?? [])),
        `${r.server?.counters.downstreamQueuePeak ?? 0}`,
      ];
    }),
  };
  const memoryTable: Table = {
    columns: [
      'variant',
      'idle RSS',
      'peak RSS',
      'peak / idle',
      'server event-loop delay p99 ms',
      'load generator event-loop delay p99 ms',
    ],
    rows: runs.map((r) => {
      if (!r.load) return [r.label, skippedCell(r), '', '', '', ''];
      return [
        r.label,
        fmt.mib(r.server?.idleRss),
        fmt.mib(r.server?.peakRss),
        r.server?.idleRss ? fmt.ratio(r.server.peakRss / r.server.idleRss) : '—',
        fmt.ms(r.server?.eventLoopDelay.p99),
        fmt.ms(r.load.generatorEventLoopDelay.p99),
      ];
    }),
  };

  // The step change, phase by phase (from the server's own 2xx count and limit samples, with their times).
  const phases: [string, number, number, number][] = [
    ['capacity 32', overload.capacity, 0, phaseS],
    ['capacity 16', overload.capacity / 2, phaseS, 2 * phaseS],
    ['capacity 32 again', overload.capacity, 2 * phaseS, 3 * phaseS],
  ];
  const stepTable: Table = {
    columns: [
      'phase (defaults)',
      'seconds',
      'capacity req/s',
      '2xx/s (last half of the phase)',
      'share of capacity',
      'limit (median, last half)',
      'downstream queue (median, last half)',
    ],
    rows: step.server?.series
      ? phases.map(([label, c, from, to]) => {
          const series = step.server!.series!;
          const elapsed = series.elapsedMs ?? [];
          const a = at(elapsed, stepLoadAtMs + ((from + to) / 2) * 1000);
          const b = at(elapsed, stepLoadAtMs + to * 1000);
          const cap = (c * 1000) / overload.callMs / overload.callsPerRequest;
          const rate = okRate(series.ok, elapsed, a, b);
          return [
            label,
            `${from}–${to}`,
            fmt.rps(cap),
            fmt.rps(rate),
            fmt.ratio(rate / cap),
            fmt.ms(median((series.limit ?? []).slice(a, b))),
            fmt.ms(median((series.downstreamQueue ?? []).slice(a, b))),
          ];
        })
      : [[step.label, skippedCell(step), '', '', '', '', '']],
  };

  const lines: TraceLine[] = [];
  const limitOf = (r: VariantRun): number[] | undefined => {
    const series = r.server?.series;
    return series?.limit && series.elapsedMs ? onGrid(series.limit, series.elapsedMs) : undefined;
  };
  if (limitOf(defaults))
    lines.push({ label: 'limit, defaults, steady 3× overload', values: limitOf(defaults)! });
  if (limitOf(step)) {
    lines.push({ label: 'limit, defaults, step change', values: limitOf(step)! });
    lines.push({
      label: "downstream's capacity (step change)",
      values: onGrid(step.server!.series!.capacity!, step.server!.series!.elapsedMs!),
      dashed: true,
    });
  }

  return {
    id: 'overload',
    title: 'Overload',
    setup:
      `A downstream with ${overload.capacity} connections, ${overload.callMs} ms per call, queueing the rest inside itself; ` +
      `${overload.callsPerRequest} calls per request, a ${overload.budgetMs} ms budget: capacity ${fmt.rps(capacity)} req/s. ` +
      `Offered ${offered} req/s (3×) from ${connections} connections (autocannon overallRate, split over ` +
      `${overloadInstances} instances started evenly over a second), ${plan.overloadDurationS} s. The package is not told ` +
      `the capacity in "defaults". Step change: the same load for ${3 * phaseS} s while the downstream's capacity is ` +
      `${overload.capacity}, then ${overload.capacity / 2} (from ${phaseS} s), then ${overload.capacity} again (from ` +
      `${2 * phaseS} s). ${pinned ? `Server on CPU ${SERVER_CPU}, load generator on CPU ${LOAD_CPU} (taskset).` : 'Not pinned (no taskset).'} ` +
      'Idle RSS: after a warm-up at a third of capacity.',
    variants: [...runs, step],
    tables: [mainTable, memoryTable, stepTable],
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
            note: `${fmt.rps(r.load.okRps)} 2xx/s (${fmt.ratio(r.load.okRps / capacity)})`,
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
    ...(lines.length
      ? {
          traces: {
            title: 'The adaptive limit over time (defaults, 3× overload), sampled every 100 ms',
            stepS: SERIES_INTERVAL_MS / 1000,
            yLabel: 'tasks',
            lines,
          },
        }
      : {}),
    notes: [
      'Latencies are split by status: 2xx are the successful responses, 503s the shed ones. "In server" is measured ' +
        "inside the server process, from the app's first middleware to the response's finish; the other latencies " +
        'are what the client saw, network and the load generator’s own event-loop delay included. "Share of capacity" ' +
        `is 2xx/s over the downstream's ${fmt.rps(capacity)} req/s. "Dropped from the queue": 503s for tasks admitted ` +
        'to the queue whose turn came too late for them to finish (the rest are shed at admission).',
    ],
  };
}
