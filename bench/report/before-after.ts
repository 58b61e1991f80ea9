// `tsx bench/report/before-after.ts before.json after.json [out.md]`: one table of every target of two bench runs
// (the same scenarios, run on the code before and after a change), side by side. Targets are matched by scenario,
// variant and their place in the scenario's list (their text carries numbers of its run, such as a measured
// capacity, so it may differ); variants measured from another checkout (`[before]`) are left out.
import { readFileSync, writeFileSync } from 'node:fs';
import type { Target } from '../scenarios/types';

interface Run {
  machine: { commit: string; date: string; loadAverageAtStart: number[]; loadAverageAtEnd?: number[] };
  durationS: number;
  targets: Target[];
}

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const verdict = (t: Target | undefined): string =>
  !t ? '—' : t.holds === null ? 'not measured' : t.holds ? 'holds' : '**fails**';

function keyed(targets: Target[]): Map<string, Target> {
  const seen = new Map<string, number>();
  const out = new Map<string, Target>();
  for (const t of targets) {
    if (t.variant.endsWith('[before]')) continue;
    const base = `${t.scenario}\u0000${t.variant}`;
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.set(`${base}\u0000${n}`, t);
  }
  return out;
}

export function beforeAfter(before: Run, after: Run): string {
  const a = keyed(before.targets);
  const b = keyed(after.targets);
  const keys = [...a.keys(), ...[...b.keys()].filter((k) => !a.has(k))];
  const load = (r: Run): string =>
    `load average ${r.machine.loadAverageAtStart.join(', ')} at start, ${r.machine.loadAverageAtEnd?.join(', ') ?? '?'} at end`;
  const out = [
    `Before: commit ${before.machine.commit}, ${before.machine.date}, ${Math.round(before.durationS)} s, ${load(before)}.`,
    `After: commit ${after.machine.commit}, ${after.machine.date}, ${Math.round(after.durationS)} s, ${load(after)}.`,
    '',
    "| scenario | target (after run's wording) | before | | after | |",
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const key of keys) {
    const x = a.get(key);
    const y = b.get(key);
    const t = (y ?? x)!;
    out.push(
      `| ${cell(t.scenario)} | ${cell(t.target)} | ${cell(x?.measured ?? '—')} | ${verdict(x)} | ${cell(y?.measured ?? '—')} | ${verdict(y)} |`,
    );
  }
  return `${out.join('\n')}\n`;
}

if (require.main === module) {
  const [beforeFile, afterFile, outFile] = process.argv.slice(2);
  if (!beforeFile || !afterFile) {
    console.error('usage: tsx bench/report/before-after.ts before.json after.json [out.md]');
    process.exit(2);
  }
  const read = (file: string): Run => JSON.parse(readFileSync(file, 'utf8')) as Run;
  const text = beforeAfter(read(beforeFile), read(afterFile));
  if (outFile) writeFileSync(outFile, text);
  else process.stdout.write(text);
}
