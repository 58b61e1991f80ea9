// The worker script's methods as `req.fanout.worker()` and `ctx.worker()` see them: argument and result
// types, checked at every call. `worker.ts` implements them.
import type { Region, RegionReport } from './db';

declare module 'express-fanout' {
  interface WorkerMethods {
    /** The report query on the database `file`, opened read-only once per thread. */
    regionReport(file: string, region: Region): RegionReport;
    /** Naive Fibonacci: CPU only. */
    fib(n: number): number;
    // An augmentation holds for the whole TypeScript program, and this repository's program also holds the
    // tests' and the benchmark's worker scripts: the index signature leaves their method names open (args and
    // results untyped), while the two methods above stay typed.
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- workerpool's own method type
    [method: string]: (...args: any[]) => unknown;
  }
}
