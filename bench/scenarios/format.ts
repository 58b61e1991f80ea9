// Numbers as the tables print them, and the target check every scenario uses.
import type { Target, VariantRun } from './types';

export const fmt = {
  ms: (v: number | undefined): string =>
    v === undefined || !Number.isFinite(v)
      ? '—'
      : v >= 100
        ? v.toFixed(0)
        : v >= 10
          ? v.toFixed(1)
          : v.toFixed(2),
  rps: (v: number | undefined): string =>
    v === undefined || !Number.isFinite(v)
      ? '—'
      : v >= 100
        ? Math.round(v).toLocaleString('en-US')
        : v.toFixed(2),
  ratio: (v: number | undefined): string =>
    v === undefined || !Number.isFinite(v) ? '—' : `${v.toFixed(3)}×`,
  pct: (v: number | undefined): string =>
    v === undefined || !Number.isFinite(v) ? '—' : `${(v * 100).toFixed(v < 0.01 && v > 0 ? 2 : 1)}%`,
  mib: (bytes: number | undefined): string =>
    bytes === undefined || !Number.isFinite(bytes) ? '—' : `${(bytes / 2 ** 20).toFixed(1)} MiB`,
};

/** `; Promise.all: …` (or another baseline) after a measurement, when the baseline was measured. */
export function besides(
  value: number | undefined,
  show: (v: number) => string,
  label = 'Promise.all',
): string {
  return value === undefined || !Number.isFinite(value) ? '' : `; ${label}: ${show(value)}`;
}

/** ` (N ms in the server)` after a client-side latency, when the server measured its own. */
export function inServer(ms: number | undefined): string {
  return ms === undefined || !Number.isFinite(ms) ? '' : ` (${fmt.ms(ms)} ms in the server)`;
}

/** A table cell for a variant that did not run: the reason in short (the log and the targets have it in full). */
export function skippedCell(run: VariantRun): string {
  const reason = run.skipped ?? 'not run';
  return `skipped: ${reason.length > 70 ? `${reason.slice(0, 67)}...` : reason}`;
}

export function check(
  scenario: string,
  variant: VariantRun,
  target: string,
  measured: number | undefined,
  holds: (v: number) => boolean,
  describe: (v: number) => string,
): Target {
  if (variant.skipped || measured === undefined || !Number.isFinite(measured)) {
    return {
      scenario,
      variant: variant.label,
      target,
      measured: variant.skipped ? `skipped: ${variant.skipped}` : 'not measured',
      holds: null,
    };
  }
  return { scenario, variant: variant.label, target, measured: describe(measured), holds: holds(measured) };
}
