// What a scenario produces: its variants' measurements, its targets, its table and its chart rows.
import type { LoadResult } from '../harness/load';
import type { ServerNumbers } from '../harness/protocol';
import type { PythonPeer } from '../harness/server-process';

/** Whose code a variant runs: the package's, a hand-written baseline, or another stack. */
export type Kind = 'package' | 'baseline' | 'peer';

/** What the package, the baselines and the peers need to be measured. */
export interface Environment {
  /** Whether dist/ is built (the package's variants are skipped otherwise). */
  packageBuilt: boolean;
  python: PythonPeer | { missing: string };
}

export interface VariantRun {
  id: string;
  label: string;
  kind: Kind;
  /** How the variant is set up, when it is more than its label says. */
  config?: string;
  skipped?: string;
  load?: LoadResult;
  /** Further loads run at the same time or on the same server (the blocking scenario's heavy endpoint). */
  loads?: Record<string, LoadResult>;
  /** The server's numbers over the measured window; `idleRss` is taken before it. */
  server?: ServerNumbers & { idleRss?: number };
  /** Requests per second of each round (overhead). */
  rounds?: number[];
}

export interface Target {
  scenario: string;
  variant: string;
  target: string;
  measured: string;
  /** `null` when it could not be measured (variant skipped, nothing to measure). */
  holds: boolean | null;
}

export interface ChartRow {
  label: string;
  p50: number;
  p99: number;
  note: string;
  kind: Kind;
}

export interface Table {
  columns: string[];
  rows: string[][];
}

export interface ScenarioResult {
  id: string;
  title: string;
  setup: string;
  variants: VariantRun[];
  tables: Table[];
  targets: Target[];
  chart: { title: string; rows: ChartRow[]; reference?: { value: number; label: string } };
  /** Values over time (the adaptive limit …), drawn as a line chart of their own. */
  traces?: TraceChart;
  notes: string[];
}

export interface TraceLine {
  label: string;
  /** One value per `stepS`, from 0. */
  values: number[];
  /** Dashed: a reference (the downstream's capacity) rather than a measurement. */
  dashed?: boolean;
}

export interface TraceChart {
  title: string;
  stepS: number;
  yLabel: string;
  lines: TraceLine[];
}
