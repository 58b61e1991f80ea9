// `npm run build && tsx bench/profile/paired.ts [--rounds 8] [--seconds 6] [--a promise-all] [--b fanout-all]`:
// two servers of the overhead scenario (bench/servers/overhead.ts) at once, both pinned to CPU 0, each loaded by
// its own 25 connections from this process on CPU 1, and each server's CPU time a response read from
// /proc/<pid>/stat (user + system, all its threads) over the same seconds. The ratio of the two is steadier than
// the scenario's alternating rounds, because whatever the shared machine does meanwhile (a neighbour, the clock
// frequency) hits both servers alike: A against A reads 0.98-1.01 here, where alternating rounds of one server
// spread ±15 %. Two servers on one core also evict each other's caches, so a ratio read this way is somewhat
// harsher than the scenario's. Linux only (taskset, /proc).
import { readFileSync } from 'node:fs';
import { runLoad } from '../harness/load';
import { pin, startNodeServer, type ServerHandle } from '../harness/server-process';

function arg(name: string, fallback: string): string {
  const at = process.argv.indexOf(name);
  return at === -1 ? fallback : (process.argv[at + 1] ?? fallback);
}

/** The process's CPU time so far, in clock ticks (user + system, its threads included). */
function cpuTicks(pid: number): number {
  // The command name (field 2) may hold spaces: count the fields after its closing parenthesis.
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime and stime, fields 14 and 15 of the whole line
}

const median = (values: readonly number[]): number => {
  const s = [...values].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** One round: both servers under load at once; each one's CPU ticks a response. */
async function round(a: ServerHandle, b: ServerHandle, seconds: number): Promise<[number, number]> {
  const load = (server: ServerHandle, durationS: number) =>
    runLoad(`http://127.0.0.1:${server.port}`, { path: '/', connections: 25, durationS });
  await Promise.all([load(a, 2), load(b, 2)]);
  const before = [cpuTicks(a.pid), cpuTicks(b.pid)];
  const [ra, rb] = await Promise.all([load(a, seconds), load(b, seconds)]);
  const after = [cpuTicks(a.pid), cpuTicks(b.pid)];
  return [(after[0]! - before[0]!) / ra.responses, (after[1]! - before[1]!) / rb.responses];
}

async function main(): Promise<void> {
  const rounds = Number(arg('--rounds', '8'));
  const seconds = Number(arg('--seconds', '6'));
  const variants = [arg('--a', 'promise-all'), arg('--b', 'fanout-all')] as const;
  if (!pin(process.pid, '1')) throw new Error('taskset is needed: both servers on CPU 0, the load on CPU 1');
  // The clock ticks a second (USER_HZ): 100 on Linux, whatever the kernel's own tick.
  const usPerTick = 10_000;
  const ratios: number[] = [];
  process.stdout.write(`| round | ${variants[0]} µs a response | ${variants[1]} µs a response | ratio |\n`);
  process.stdout.write('| --- | --- | --- | --- |\n');
  for (let r = 1; r <= rounds; r++) {
    // Fresh servers each round, started in turn order swapped, so neither always has the first start.
    const order = r % 2 ? variants : ([variants[1], variants[0]] as const);
    const started = [
      await startNodeServer('overhead', order[0], '0'),
      await startNodeServer('overhead', order[1], '0'),
    ];
    const [a, b] = r % 2 ? started : [started[1]!, started[0]!];
    try {
      const [ta, tb] = await round(a!, b!, seconds);
      const ratio = ta / tb;
      ratios.push(ratio);
      process.stdout.write(
        `| ${r} | ${(ta * usPerTick).toFixed(1)} | ${(tb * usPerTick).toFixed(1)} | ${ratio.toFixed(3)} |\n`,
      );
    } finally {
      await Promise.all(started.map((s) => s.stop()));
    }
  }
  process.stdout.write(
    `\n${variants[1]} against ${variants[0]}, their CPU a response (${variants[0]}'s over ${variants[1]}'s: ` +
      `above 1 when ${variants[1]} costs less), median of ${rounds} rounds: **${median(ratios).toFixed(3)}** ` +
      `[${Math.min(...ratios).toFixed(3)}-${Math.max(...ratios).toFixed(3)}]\n`,
  );
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exitCode = 1;
});
