// `tsx bench/profile/summarize.ts <file.cpuprofile> [--top 30] [--title "…"]`: the top frames by self time of a V8
// CPU profile (`node --cpu-prof`), as a markdown table, and the share of time in the package's own files.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface Frame {
  name: string;
  where: string;
  selfMs: number;
  share: number;
}

/** Where a frame's code lives, shortened: `lib/scope.ts:170`, `node:events`, `express/lib/router/index.js`. */
function place(frame: CallFrame, root: string): string {
  const url = frame.url.replace(/^file:\/\//, '');
  if (url === '') return '(native)';
  if (!url.startsWith('/')) return url;
  const rel = relative(root, url);
  const short = rel.includes('node_modules/') ? rel.slice(rel.lastIndexOf('node_modules/') + 13) : rel;
  return `${short}:${frame.lineNumber + 1}`;
}

/** Self time by function (name and place), largest first. */
export function topFrames(profile: CpuProfile, root: string): { frames: Frame[]; totalMs: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    // The delta before a sample is the time that sample stands for (V8's own convention, as DevTools reads it).
    const delta = profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + Math.max(0, delta));
  }
  const byFrame = new Map<string, Frame>();
  let totalUs = 0;
  for (const [id, us] of self) {
    totalUs += us;
    const frame = byId.get(id)!.callFrame;
    const name = frame.functionName || '(anonymous)';
    const where = place(frame, root);
    const key = `${name}\0${where}`;
    const entry = byFrame.get(key) ?? { name, where, selfMs: 0, share: 0 };
    entry.selfMs += us / 1000;
    byFrame.set(key, entry);
  }
  const frames = [...byFrame.values()].sort((a, b) => b.selfMs - a.selfMs);
  for (const f of frames) f.share = f.selfMs / (totalUs / 1000);
  return { frames, totalMs: totalUs / 1000 };
}

/** The share of the busy time (idle and GC aside) spent in each group of files. */
export function byGroup(frames: Frame[]): [string, number][] {
  const groups = new Map<string, number>();
  const busy = frames.filter((f) => f.name !== '(idle)' && f.name !== '(program)');
  const total = busy.reduce((s, f) => s + f.selfMs, 0);
  for (const f of busy) {
    const group =
      f.name === '(garbage collector)'
        ? 'garbage collector'
        : f.where.startsWith('dist/') || f.where.startsWith('lib/')
          ? 'express-fanout'
          : f.where.startsWith('express/') || f.where.startsWith('router/')
            ? 'express'
            : f.where.startsWith('node:')
              ? 'node core'
              : f.where === '(native)'
                ? 'native / builtins'
                : 'other';
    groups.set(group, (groups.get(group) ?? 0) + f.selfMs / total);
  }
  return [...groups].sort((a, b) => b[1] - a[1]);
}

export function renderTop(file: string, root: string, top: number): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const { frames, totalMs } = topFrames(profile, root);
  const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;
  const lines = [
    `${(totalMs / 1000).toFixed(1)} s sampled; idle is time the event loop waited (for the load generator, or for the core, which this shared machine's other processes also use).`,
    '',
    '| share of busy time | group |',
    '| --- | --- |',
    ...byGroup(frames).map(([g, s]) => `| ${pct(s)} | ${g} |`),
    '',
    `Top ${top} frames by self time:`,
    '',
    '| self ms | share | function | where |',
    '| --- | --- | --- | --- |',
    ...frames
      .slice(0, top)
      .map((f) => `| ${f.selfMs.toFixed(0)} | ${pct(f.share)} | \`${f.name}\` | ${f.where} |`),
    '',
    `The package's own frames (dist/ or lib/), top ${Math.ceil(top / 2)}:`,
    '',
    '| self ms | share | function | where |',
    '| --- | --- | --- | --- |',
    ...frames
      .filter((f) => f.where.startsWith('dist/') || f.where.startsWith('lib/'))
      .slice(0, Math.ceil(top / 2))
      .map((f) => `| ${f.selfMs.toFixed(0)} | ${pct(f.share)} | \`${f.name}\` | ${f.where} |`),
  ];
  return `${lines.join('\n')}\n`;
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--top');
  const top = at === -1 ? 30 : Number(args[at + 1]);
  const file = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--top');
  if (!file) {
    console.error('usage: tsx bench/profile/summarize.ts <file.cpuprofile> [--top 30]');
    process.exit(1);
  }
  process.stdout.write(renderTop(file, process.cwd(), top));
}
