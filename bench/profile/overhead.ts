// `npm run build && tsx bench/profile/overhead.ts [--seconds 15] [--out bench/results/profile-before.md]
// [--variant fanout-all]`: a CPU profile of the overhead scenario's `req.fanout.all` server (three instant tasks, `fanout({ serverTiming: false
// })`: the defaults as in production) under 50 connections, the server pinned to CPU 0 and the load generator to
// CPU 1, then its top frames by self time written as markdown (bench/profile/summarize.ts).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runLoad } from '../harness/load';
import { pin, rootDir, startNodeServer } from '../harness/server-process';
import { renderTop } from './summarize';

function arg(name: string, fallback: string): string {
  const at = process.argv.indexOf(name);
  return at === -1 ? fallback : (process.argv[at + 1] ?? fallback);
}

function commit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: rootDir, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const seconds = Number(arg('--seconds', '15'));
  const out = arg('--out', join(rootDir, 'bench', 'results', 'profile-before.md'));
  const variant = arg('--variant', 'fanout-all');
  const dir = mkdtempSync(join(tmpdir(), 'fanout-profile-'));
  const file = join(dir, `${variant}.cpuprofile`);
  // The server inherits it (bench/servers/overhead.ts profiles itself from 2 s after its start to its stop).
  process.env.BENCH_CPU_PROFILE = file;
  const pinned = pin(process.pid, '1');
  const server = await startNodeServer('overhead', variant, pinned ? '0' : undefined);
  let rps = 0;
  try {
    const url = `http://127.0.0.1:${server.port}`;
    await runLoad(url, { path: '/', connections: 50, durationS: 3 });
    rps = (await runLoad(url, { path: '/', connections: 50, durationS: seconds })).rps;
  } finally {
    await server.stop();
  }
  if (!existsSync(file)) throw new Error(`the server wrote no profile (${file})`);
  const text =
    `# CPU profile: overhead scenario, \`${variant}\`\n\n` +
    `Three instant tasks a request, 50 connections, ${seconds} s after a 3 s warm-up; ` +
    `${pinned ? 'server pinned to CPU 0, load generator to CPU 1' : 'not pinned (taskset missing)'}; ` +
    `${Math.round(rps).toLocaleString('en-US')} req/s under the profiler. Written by \`tsx bench/profile/overhead.ts\` ` +
    `from the dist/ built at commit ${commit()}.\n\n` +
    renderTop(file, rootDir, 40);
  writeFileSync(out, text);
  process.stdout.write(text);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exitCode = 1;
});
