// bench/results/latest.md: the machine, every target with whether it holds, each scenario's table, and what
// every column means. Also the plain-text tables the runner prints when it finishes.
import type { Machine } from '../harness/machine';
import type { ScenarioResult, Target } from '../scenarios/types';

export interface Report {
  machine: Machine;
  quick: boolean;
  durationS: number;
  packagePaths: string[];
  python: string;
  scenarios: ScenarioResult[];
  skippedScenarios: { title: string; reason: string }[];
}

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

const NUMERIC = /^(-?[\d.,]+(×| MiB|%)?|—)$/;

function table(columns: string[], rows: string[][]): string {
  // Numbers right-aligned, text left: a column is numeric when each of its filled cells is.
  const numeric = columns.map(
    (_, i) => rows.every((r) => !r[i] || NUMERIC.test(r[i]!)) && rows.some((r) => r[i]),
  );
  return [
    `| ${columns.map(cell).join(' | ')} |`,
    `| ${columns.map((_, i) => (numeric[i] ? '---:' : '---')).join(' | ')} |`,
    ...rows.map((row) => `| ${row.map(cell).join(' | ')} |`),
  ].join('\n');
}

export const verdict = (t: Target): string =>
  t.holds === null ? 'not measured' : t.holds ? 'holds' : 'FAILS';

export function allTargets(report: Report): Target[] {
  return report.scenarios.flatMap((s) => s.targets);
}

const COLUMNS = `
- **p50 / p99 / p99.9 / max ms**: latency percentiles of the responses, measured by the load generator
  (autocannon, in the parent process) from sending the request to the end of the response; exact (every
  response is kept, nearest-rank), not from a histogram.
- **req/s**: responses per second. Each connection counts the responses it got between its first request and its
  last response; the server's rate is the sum over connections (no ramp-up or cut-off bias, which matters when one
  request takes 300 ms of a 12 s run). In the overhead scenario, the median of the rounds.
- **in server**: latency measured inside the server process, from the app's first middleware to the response's
  \`finish\` (histogram, µs resolution): what the server itself took, without the network or the load generator.
- **p50 / slowest, req/s / limit**: the story's physical limit: a request cannot answer before its slowest
  dependency (300 ms), so 1 connection cannot exceed 1 / 0.3 s and 100 connections 100 / 0.3 s.
- **ratio to Promise.all**: req/s of the variant over req/s of the hand-written \`Promise.all\` (1.000× = no cost).
- **server CPU, server CPU µs / request**: the server process's CPU time (user + system) over the measured window,
  as a share of one core and per response. Less sensitive than req/s to a busy neighbour; the load generator's
  share is next to it (the two share the machine's cores). **ratio from CPU / request**: Promise.all's CPU per
  request over the variant's, paired per round (the server is CPU-bound, so req/s follows 1 / CPU per request):
  the same comparison, less disturbed by a busy neighbour; shown next to the target, which is on req/s.
- **fallbacks (share of calls)**: tasks that answered with their fallback because they missed the budget, over all
  tasks; **requests with a fallback**: responses that carried at least one.
- **2xx/s, 2xx p99**: successful responses only; **503 share, 503 p99**: responses shed by the package.
- **idle RSS / peak RSS**: the server's resident memory after a warm-up well below capacity, and the highest
  value sampled every 25 ms during the overload (\`process.memoryUsage.rss()\` in the server).
- **downstream queue peak**: the most calls waiting for one of the simulated downstream's connections.
- **light / heavy**: the blocking scenario's two endpoints, loaded at the same time; **event-loop delay**:
  \`perf_hooks.monitorEventLoopDelay\` in the server over the measured window, in ms beyond its 10 ms sampling
  interval (the histogram records the whole interval; an idle loop reads about 0).
- **load generator event-loop delay**: the parent's own event-loop delay while it drove the load; the client-side
  latencies include it.
- **errors + non-2xx**: connection errors, timeouts and non-2xx answers (none expected outside the overload).
`;

export function renderMarkdown(report: Report, chartFile: string): string {
  const { machine: m } = report;
  const targets = allTargets(report);
  const held = targets.filter((t) => t.holds === true).length;
  const failed = targets.filter((t) => t.holds === false).length;
  const out: string[] = [];
  out.push(`# express-fanout benchmark${report.quick ? ' (quick run)' : ''}`);
  out.push('');
  if (report.quick) {
    out.push(
      '> A `--quick` run: a few seconds per variant, enough to prove the harness, too short for the numbers.',
    );
    out.push('');
  }
  out.push(
    table(
      ['machine', ''],
      [
        ['CPU', `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB`],
        ['OS', m.os],
        ['Node', m.node],
        [
          'express-fanout',
          `${m.packageVersion} (commit ${m.commit}), loaded from ${report.packagePaths.join(', ') || 'not loaded'}`,
        ],
        ['express / autocannon', `${m.express} / ${m.autocannon}`],
        ['Python peer', report.python],
        ['date', m.date],
        [
          'load average (1, 5, 15 min)',
          `${m.loadAverageAtStart.join(', ')} at start; ${m.loadAverageAtEnd?.join(', ') ?? '?'} at end`,
        ],
        ['run time', `${Math.round(report.durationS)} s`],
      ],
    ),
  );
  out.push('');
  out.push(
    'Every server runs in a process of its own (identical Express 5 apps that differ only in the route handler), ' +
      'driven from the parent with autocannon over 127.0.0.1, on the same machine: load generator and server share ' +
      'the cores, so absolute numbers are low and noisy; compare ratios within a run.',
  );
  out.push('');
  out.push(
    `## Targets: ${held} hold, ${failed} fail${targets.length - held - failed ? `, ${targets.length - held - failed} not measured` : ''}`,
  );
  out.push('');
  out.push(
    table(
      ['scenario', 'variant', 'target', 'measured', ''],
      targets.map((t) => [t.scenario, t.variant, t.target, t.measured, verdict(t)]),
    ),
  );
  for (const skipped of report.skippedScenarios)
    out.push('', `**${skipped.title}**: skipped, ${skipped.reason}.`);
  report.scenarios.forEach((s, i) => {
    out.push('', `## ${i + 1}. ${s.title}`, '', s.setup);
    for (const t of s.tables) out.push('', table(t.columns, t.rows));
    if (s.targets.length) {
      out.push(
        '',
        table(
          ['target', 'variant', 'measured', ''],
          s.targets.map((t) => [t.target, t.variant, t.measured, verdict(t)]),
        ),
      );
    }
    for (const note of s.notes) out.push('', note);
    if (s.traces) out.push('', `![${s.traces.title}](${chartFile.replace(/\.svg$/, '')}-${s.id}-trace.svg)`);
  });
  out.push('', '## Columns', COLUMNS.trimEnd(), '');
  out.push(`![latency per scenario and variant](${chartFile})`, '');
  return out.join('\n');
}

/** The same tables as plain aligned text, for the terminal. */
export function renderText(s: ScenarioResult): string {
  return s.tables
    .map(({ columns, rows }) => {
      const all = [columns, ...rows];
      const widths = columns.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
      return all
        .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '))
        .join('\n');
    })
    .join('\n\n');
}
