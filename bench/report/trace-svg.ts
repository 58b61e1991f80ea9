// A small line chart of values over time (the adaptive limit in the overload scenario), written by hand like
// svg.ts: one polyline per series, a dashed one for a reference such as the downstream's capacity.
import type { TraceChart } from '../scenarios/types';

const WIDTH = 900;
const HEIGHT = 320;
const LEFT = 60;
const RIGHT = 250;
const TOP = 44;
const BOTTOM = 44;
const COLOURS = ['#1d4ed8', '#b45309', '#dc2626', '#047857', '#6b21a8'];

const escape = (text: string): string =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function niceStep(max: number, intervals: number): number {
  const raw = max / intervals;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

export function renderTraceSvg(chart: TraceChart): string {
  const lines = chart.lines.filter((l) => l.values.some(Number.isFinite));
  const longest = Math.max(1, ...lines.map((l) => l.values.length));
  const maxY = Math.max(1, ...lines.flatMap((l) => l.values.filter(Number.isFinite))) * 1.1;
  const yTick = niceStep(maxY, 4);
  const yEnd = Math.ceil(maxY / yTick) * yTick;
  const xEnd = longest * chart.stepS;
  const xTick = niceStep(xEnd, 6);
  const plotW = WIDTH - LEFT - RIGHT;
  const plotH = HEIGHT - TOP - BOTTOM;
  const x = (s: number): number => LEFT + (s / xEnd) * plotW;
  const y = (v: number): number => TOP + plotH - (v / yEnd) * plotH;
  const out: string[] = [];
  for (let v = 0; v <= yEnd + yTick / 2; v += yTick) {
    out.push(
      `<line x1="${LEFT}" y1="${y(v).toFixed(1)}" x2="${LEFT + plotW}" y2="${y(v).toFixed(1)}" class="grid"/>`,
      `<text x="${LEFT - 6}" y="${(y(v) + 4).toFixed(1)}" class="ytick">${v}</text>`,
    );
  }
  for (let s = 0; s <= xEnd + 1e-9; s += xTick) {
    out.push(`<text x="${x(s).toFixed(1)}" y="${TOP + plotH + 16}" class="xtick">${s} s</text>`);
  }
  lines.forEach((line, i) => {
    const colour = COLOURS[i % COLOURS.length]!;
    const points = line.values
      .map((v, k) => (Number.isFinite(v) ? `${x(k * chart.stepS).toFixed(1)},${y(v).toFixed(1)}` : ''))
      .filter(Boolean)
      .join(' ');
    out.push(
      `<polyline points="${points}" fill="none" stroke="${colour}" stroke-width="${line.dashed ? 1.5 : 2}"${line.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<line x1="${LEFT + plotW + 16}" y1="${TOP + 10 + i * 22}" x2="${LEFT + plotW + 40}" y2="${TOP + 10 + i * 22}" stroke="${colour}" stroke-width="2"${line.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<text x="${LEFT + plotW + 46}" y="${TOP + 14 + i * 22}" class="legend">${escape(line.label)}</text>`,
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif">
<style>
  .title { font-size: 14px; font-weight: 600; fill: #111827; }
  .legend { font-size: 11px; fill: #374151; }
  .xtick { font-size: 10px; fill: #6b7280; text-anchor: middle; }
  .ytick { font-size: 10px; fill: #6b7280; text-anchor: end; }
  .grid { stroke: #e5e7eb; stroke-width: 1; }
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="${LEFT}" y="24" class="title">${escape(chart.title)}</text>
<text x="14" y="${TOP + plotH / 2}" class="legend" transform="rotate(-90 14 ${TOP + plotH / 2})">${escape(chart.yLabel)}</text>
${out.join('\n')}
</svg>
`;
}
