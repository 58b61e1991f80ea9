// What the four pressure scenarios of issue 16 (surge, isolation, workers-overload, loop-overload) share: the pinned
// layout, rounds that alternate the variants on fresh servers, medians with their spread, the calibrated CPU step,
// and the traces read from the servers' flattened `stats()`.
import { performance } from 'node:perf_hooks';
import type { LoadResult } from '../harness/load';
import { say } from '../harness/progress';
import type { ServerNumbers } from '../harness/protocol';
import { SERIES_INTERVAL_MS } from '../harness/protocol';
import { affinity, pin, type ServerHandle } from '../harness/server-process';
import { burn } from '../servers/cpu.js';
import { BURN_PER_MS_ENV } from '../servers/pressure-params';
import { fmt } from './format';
import type { Environment, TraceLine, VariantRun } from './types';
import { skipPackage, withServer } from './variant';

export const SERVER_CPU = '0';
export const LOAD_CPU = '1';

export const median = (values: number[]): number => {
  const s = values.filter(Number.isFinite).sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** `median [min–max]` of the rounds (just the value when there is one round). */
export function spread(values: number[], show: (v: number) => string): string {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return '—';
  if (finite.length === 1) return show(finite[0]!);
  return `${show(median(finite))} [${show(Math.min(...finite))}–${show(Math.max(...finite))}]`;
}

/**
 * Rounds of a full run: 3, or `BENCH_PRESSURE_ROUNDS` (a positive integer) to trade the spread for time, e.g. when
 * a side-by-side run with `BENCH_BEFORE_ROOT` doubles the package's variants.
 */
export function fullRounds(): number {
  const raw = process.env.BENCH_PRESSURE_ROUNDS;
  if (raw === undefined || raw === '') return 3;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`Expected BENCH_PRESSURE_ROUNDS to be an integer >= 1, got \`${raw}\``);
  }
  return n;
}

/** One measured round of a variant: what the client saw and what the server said about the same window. */
export interface Round {
  load: LoadResult;
  loads?: Record<string, LoadResult>;
  server: (ServerNumbers & { idleRss?: number }) | undefined;
}

/** The round whose `key` is the median (for the chart and the trace: a real round, not a blend). */
export function medianRound(rounds: Round[], key: (r: Round) => number): Round | undefined {
  const sorted = [...rounds].filter((r) => Number.isFinite(key(r))).sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** Share of a load's responses with `code`, 0 to 1. */
export const shareOf = (r: LoadResult, code: string): number =>
  (r.byStatus[code]?.count ?? 0) / Math.max(1, r.responses);

/** Runs `body` with this process on the load CPU (the servers go on the server CPU); restores the affinity after. */
export async function pinned<T>(name: string, body: (cpus: string | undefined) => Promise<T>): Promise<T> {
  const restore = affinity(process.pid);
  const ok = pin(process.pid, LOAD_CPU);
  say(
    ok
      ? `  ${name}: server pinned to CPU ${SERVER_CPU}, load generator to CPU ${LOAD_CPU} (taskset)`
      : `  ${name}: taskset unavailable, server and load generator share the cores`,
  );
  try {
    return await body(ok ? SERVER_CPU : undefined);
  } finally {
    if (ok && restore) pin(process.pid, restore);
  }
}

export const layout = (cpus: string | undefined): string =>
  cpus
    ? `Server on CPU ${SERVER_CPU} (its worker threads too), load generator on CPU ${LOAD_CPU} (taskset).`
    : 'Not pinned (no taskset).';

/**
 * Iterations of `burn()` per ms on this machine, measured here (the best of 15 runs, so a busy neighbour does not
 * make the step shorter) and handed to the servers in the environment, so every variant burns the same work.
 */
export function calibrateBurn(): number {
  const existing = Number(process.env[BURN_PER_MS_ENV]);
  if (Number.isFinite(existing) && existing > 0) return existing;
  const n = 2_000_000;
  burn(n);
  let best = Infinity;
  for (let i = 0; i < 15; i++) {
    const t = performance.now();
    burn(n);
    best = Math.min(best, performance.now() - t);
  }
  const perMs = n / best;
  process.env[BURN_PER_MS_ENV] = String(Math.round(perMs));
  return perMs;
}

/**
 * BENCH_BEFORE_ROOT=/path/to/an/older/checkout (built, with this bench/ copied in): every package variant also
 * runs from there, in the same rounds, right before this one, so before and after are measured side by side.
 */
export function withBeforeTwins(runs: VariantRun[]): Map<VariantRun, string> {
  const beforeRoot = process.env.BENCH_BEFORE_ROOT;
  const roots = new Map<VariantRun, string>();
  if (!beforeRoot) return roots;
  for (const run of runs.filter((r) => r.kind === 'package')) {
    const before: VariantRun = {
      ...run,
      id: `${run.id}@before`,
      label: `${run.label} [before]`,
      kind: 'baseline',
    };
    roots.set(before, beforeRoot);
    runs.splice(runs.indexOf(run), 0, before);
  }
  return roots;
}

/** The server variant a run starts (a before twin starts the same one from the other checkout). */
export const serverVariant = (run: VariantRun): string => run.id.replace(/@before$/, '');

/**
 * Starts `run`'s server (`file`, variant `serverVariant(run)`), pinned, from its root, runs `body` and stops it.
 * Skips a package variant when dist/ is not built.
 */
export async function onFreshServer(
  run: VariantRun,
  file: string,
  env: Environment,
  roots: Map<VariantRun, string>,
  cpus: string | undefined,
  body: (server: ServerHandle) => Promise<void>,
  variantOf: (run: VariantRun) => string = serverVariant,
): Promise<void> {
  const root = roots.get(run);
  if (!root && skipPackage(run, env)) return;
  await withServer(
    run,
    { node: { file, variant: variantOf(run), ...(cpus ? { cpus } : {}), ...(root ? { root } : {}) } },
    body,
  );
}

/** A pause between the warm-up and the measured window (sockets closed, timers drained). */
export const settle = (ms = 300): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A series on a regular grid of `stepMs` (the latest sample at or before each point). */
export function onGrid(values: number[], elapsed: number[], stepMs = SERIES_INTERVAL_MS): number[] {
  const out: number[] = [];
  let i = 0;
  for (let t = 0; t <= (elapsed.at(-1) ?? 0); t += stepMs) {
    while (i + 1 < elapsed.length && elapsed[i + 1]! <= t) i++;
    const v = values[i];
    // Sent over IPC as JSON, a NaN sample arrives as null.
    out.push(typeof v === 'number' ? v : Number.NaN);
  }
  return out;
}

/** The server's series whose name matches `pattern`, each with the pattern's first group (or the name) as key. */
export function seriesMatching(server: Round['server'], pattern: RegExp): [string, number[]][] {
  const series = server?.series;
  if (!series) return [];
  return Object.entries(series)
    .filter(([name]) => pattern.test(name))
    .map(([name, values]) => [pattern.exec(name)?.[1] ?? name, values]);
}

/** Per-dependency limits in the flattened stats (`stats.dependencies.<name>.limit`, any prefix before it). */
export const DEPENDENCY_LIMIT = /^stats\.(?:[\w-]+\.)?dependencies\.(.+)\.limit$/;

/** Trace lines (on the 100 ms grid) of the series matching `pattern` in one round's server, labelled. */
export function traceLines(
  server: Round['server'],
  pattern: RegExp,
  label: (key: string) => string,
  max = 6,
): TraceLine[] {
  const elapsed = server?.series?.elapsedMs;
  if (!elapsed) return [];
  return seriesMatching(server, pattern)
    .slice(0, max)
    .map(([key, values]) => ({ label: label(key), values: onGrid(values, elapsed) }));
}

/**
 * The `stats()` trace every 0.5 s as a table: time, then each field whose name matches `pattern` (at most
 * `maxColumns`, the order of `pattern`'s matches), from one round's server.
 */
export function statsTraceTable(
  server: Round['server'],
  patterns: RegExp[],
  maxColumns = 9,
  stepMs = 500,
): { columns: string[]; rows: string[][] } | undefined {
  const series = server?.series;
  const elapsed = series?.elapsedMs;
  if (!series || !elapsed) return undefined;
  const names: string[] = [];
  for (const pattern of patterns) {
    for (const name of Object.keys(series)) {
      if (pattern.test(name) && !names.includes(name) && names.length < maxColumns) names.push(name);
    }
  }
  if (names.length === 0) return undefined;
  const grids = names.map((name) => onGrid(series[name]!, elapsed, stepMs));
  const length = Math.max(...grids.map((g) => g.length));
  const rows: string[][] = [];
  for (let i = 0; i < length; i++) {
    rows.push([
      ((i * stepMs) / 1000).toFixed(1),
      ...grids.map((g) => (Number.isFinite(g[i]) ? String(Math.round(g[i]! * 100) / 100) : '—')),
    ]);
  }
  return { columns: ['s', ...names.map((n) => n.replace(/^stats\./, ''))], rows };
}

/** Peak RSS over idle, one round. */
export const rssRatio = (r: Round | undefined): number =>
  r?.server?.idleRss ? r.server.peakRss / r.server.idleRss : Number.NaN;

export const rssCell = (rounds: Round[]): string =>
  rounds.length
    ? `${fmt.mib(median(rounds.map((r) => r.server?.peakRss ?? NaN)))} / ${fmt.mib(
        median(rounds.map((r) => r.server?.idleRss ?? NaN)),
      )} (${spread(rounds.map(rssRatio), fmt.ratio)})`
    : '—';

/**
 * 2xx a second inside the offered window (from `fromS`, once every load instance has started, to `toS`, when the
 * offered load stops), from the server's cumulative series `name` (`trackAnswers`). The load's own rate spans
 * first request to last response, drain included, and understates the rate when answers come seconds late.
 * Falls back to `fallback` where the server has no such series.
 */
export function windowRate(
  server: Round['server'],
  name: string,
  fromS: number,
  toS: number,
  fallback: number,
): number {
  const values = server?.series?.[name];
  const elapsed = server?.series?.elapsedMs;
  if (!values || !elapsed || elapsed.length < 2) return fallback;
  const index = (ms: number): number => {
    const i = elapsed.findIndex((t) => t >= ms);
    return i === -1 ? elapsed.length - 1 : i;
  };
  const a = index(fromS * 1000);
  const b = index(toS * 1000);
  if (b <= a) return fallback;
  return ((values[b]! - values[a]!) * 1000) / (elapsed[b]! - elapsed[a]!);
}
