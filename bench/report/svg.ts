// The chart of bench/results/latest.svg, written by hand: one panel per scenario, one row per variant, a dark bar
// to p50 over a light bar to p99 (ms), each panel on its own linear scale, with the limit or budget as a dashed line.
import type { Machine } from '../harness/machine';
import type { ChartRow, Kind, ScenarioResult } from '../scenarios/types';

const WIDTH = 1100;
const LABEL_END = 340;
const BAR_START = 350;
const BAR_END = 800;
const NOTE_START = 812;
const ROW = 26;

const COLOURS: Record<Kind, { p50: string; p99: string }> = {
  package: { p50: '#1d4ed8', p99: '#93c5fd' },
  baseline: { p50: '#4b5563', p99: '#d1d5db' },
  peer: { p50: '#b45309', p99: '#fcd34d' },
};

const escape = (text: string): string =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const ms = (v: number): string => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

const tickLabel = (v: number, tick: number): string =>
  tick >= 1 ? v.toFixed(0) : v.toFixed(Math.min(3, Math.ceil(-Math.log10(tick))));

/** A step of 1, 2 or 5 × 10^k giving about four intervals up to `max`. */
function step(max: number): number {
  const raw = max / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

function panel(scenario: ScenarioResult, top: number, out: string[]): number {
  const { chart } = scenario;
  const rows: ChartRow[] = chart.rows.filter((r) => Number.isFinite(r.p50) && Number.isFinite(r.p99));
  out.push(`<text x="20" y="${top + 16}" class="panel">${escape(chart.title)}</text>`);
  const axisY = top + 34;
  if (rows.length === 0) {
    out.push(`<text x="${BAR_START}" y="${axisY + 14}" class="note">no variant measured</text>`);
    return axisY + 34;
  }
  const max = Math.max(...rows.map((r) => r.p99), chart.reference?.value ?? 0) * 1.05;
  const tick = step(max);
  const end = Math.ceil(max / tick) * tick;
  const x = (v: number): number => BAR_START + (Math.max(0, v) / end) * (BAR_END - BAR_START);
  const bottom = axisY + 8 + rows.length * ROW;
  for (let v = 0; v <= end + tick / 2; v += tick) {
    out.push(
      `<line x1="${x(v).toFixed(1)}" y1="${axisY + 4}" x2="${x(v).toFixed(1)}" y2="${bottom}" class="grid"/>`,
      `<text x="${x(v).toFixed(1)}" y="${axisY}" class="tick">${v === 0 ? '0 ms' : tickLabel(v, tick)}</text>`,
    );
  }
  rows.forEach((row, i) => {
    const y = axisY + 8 + i * ROW;
    const colour = COLOURS[row.kind];
    out.push(
      `<text x="${LABEL_END}" y="${y + 17}" class="label">${escape(row.label)}</text>`,
      `<rect x="${BAR_START}" y="${y + 4}" width="${(x(row.p99) - BAR_START).toFixed(1)}" height="16" fill="${colour.p99}"/>`,
      `<rect x="${BAR_START}" y="${y + 7}" width="${(x(row.p50) - BAR_START).toFixed(1)}" height="10" fill="${colour.p50}"/>`,
      `<text x="${NOTE_START}" y="${y + 17}" class="note"><tspan class="value">${ms(row.p50)} / ${ms(row.p99)} ms</tspan>  ${escape(row.note)}</text>`,
    );
  });
  if (chart.reference) {
    const rx = x(chart.reference.value).toFixed(1);
    out.push(
      `<line x1="${rx}" y1="${axisY + 4}" x2="${rx}" y2="${bottom + 4}" class="reference"/>`,
      `<text x="${rx}" y="${bottom + 16}" class="reference-label">${escape(chart.reference.label)}</text>`,
    );
  }
  return bottom + 30;
}

export function renderSvg(machine: Machine, scenarios: ScenarioResult[], quick: boolean): string {
  const body: string[] = [];
  let y = 92;
  for (const scenario of scenarios) y = panel(scenario, y, body);
  const height = y + 10;
  const legend = (Object.keys(COLOURS) as Kind[])
    .map((kind, i) => {
      const lx = 20 + i * 200;
      const name =
        kind === 'package' ? 'express-fanout' : kind === 'baseline' ? 'hand-written baseline' : 'peer stack';
      return (
        `<rect x="${lx}" y="62" width="12" height="12" fill="${COLOURS[kind].p50}"/>` +
        `<rect x="${lx + 12}" y="62" width="12" height="12" fill="${COLOURS[kind].p99}"/>` +
        `<text x="${lx + 30}" y="72" class="note">${name}</text>`
      );
    })
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif">
<style>
  .title { font-size: 18px; font-weight: 600; fill: #111827; }
  .sub { font-size: 11px; fill: #4b5563; }
  .panel { font-size: 14px; font-weight: 600; fill: #111827; }
  .label { font-size: 12px; fill: #111827; text-anchor: end; }
  .note { font-size: 11px; fill: #374151; }
  .value { font-weight: 600; }
  .tick { font-size: 10px; fill: #6b7280; text-anchor: middle; }
  .grid { stroke: #e5e7eb; stroke-width: 1; }
  .reference { stroke: #dc2626; stroke-width: 1.5; stroke-dasharray: 5 3; }
  .reference-label { font-size: 10px; fill: #dc2626; text-anchor: middle; }
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="20" y="28" class="title">express-fanout benchmark${quick ? ' (quick run: short, noisy)' : ''}: latency per scenario and variant</text>
<text x="20" y="48" class="sub">${escape(`${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.date.slice(0, 10)}. Bars: dark to p50, light to p99 (ms, each panel on its own scale); dashed red: the limit or budget.`)}</text>
${legend}
${body.join('\n')}
</svg>
`;
}
