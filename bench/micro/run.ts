// `node --require tsx/cjs bench/micro/run.ts [--quick]`: the hot-path microbenchmark
// (bench/micro/hot-path.ts) at three tasks, then the cost growth at N = 1 … 1000 tasks a request, printed as one
// JSON object on stdout. It loads the built dist/, as users get it (TSX_TSCONFIG_PATH=bench/tsconfig.run.json).
import { measureHotPath, type FanoutFactory, type HotPathResult } from './hot-path';

export interface MicroReport {
  /** Three instant tasks, defaults (`budgetMs` only, Server-Timing off). */
  three: HotPathResult;
  /** The same with the tasks given as `{ run }` spec objects defined once (validation on the path). */
  threeSpecs: HotPathResult;
  /** The same with Server-Timing on (the default outside production). */
  threeServerTiming: HotPathResult;
  /** Three functions, defaults, both sides through Express on real request and response objects (no sockets). */
  threeExpress: HotPathResult;
  /** Defaults with `perRequest` and `maxQueue` out of the way, N = 1 … 1000. */
  growth: HotPathResult[];
}

export const GROWTH_N = [1, 3, 10, 30, 100, 300, 1000];

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const { fanout } = (await import('express-fanout')) as { fanout: FanoutFactory };
  const rounds = quick ? 4 : 12;
  const three = (extra: object) =>
    measureHotPath({ fanout, tasks: 3, rounds, batch: quick ? 5000 : 20_000, ...extra });
  const report: MicroReport = {
    three: await three({}),
    threeSpecs: await three({ specs: true }),
    threeServerTiming: await three({ options: { serverTiming: true } }),
    threeExpress: await three({ express: true }),
    growth: [],
  };
  for (const n of GROWTH_N) {
    // About the same number of tasks a round at every N, at least 20 requests.
    const batch = Math.max(20, Math.round((quick ? 15_000 : 60_000) / n));
    report.growth.push(
      await measureHotPath({
        fanout,
        tasks: n,
        rounds,
        batch,
        options: { perRequest: 100_000, maxQueue: 100_000 },
      }),
    );
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exitCode = 1;
});
