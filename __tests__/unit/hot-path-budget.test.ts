// The hot path's budget, as a regression guard that cannot flake on a shared machine: no absolute times, only
// ratios to a bare `Promise.all` of the same tasks measured in the same run, with bounds several times looser than
// what is measured (bench/micro/hot-path.ts; the numbers themselves are in `npm run bench`, scenario hot-path).
import { fanout } from '../../lib';
import { measureHotPath, type FanoutFactory } from '../../bench/micro/hot-path';

const factory = fanout as unknown as FanoutFactory;

describe('hot path budget (ratios to Promise.all in the same run)', () => {
  it('one all() of three instant tasks allocates under 8x what a bare Promise.all of them does', async () => {
    const r = await measureHotPath({ fanout: factory, tasks: 3, rounds: 5, batch: 2000 });
    // Measured (lib/ under ts-jest, and dist/): 2.3-3.0x, 6.7-8.9 KB a request. No bound in KB: in a full run a
    // jest worker's other work (timers of earlier test files) allocates meanwhile and is counted (42 KB seen).
    expect(r.bytesRatio).toBeLessThan(8);
    // Measured 0.2-0.3 of Promise.all's rate without Express around it (Express costs ~70 µs a request).
    expect(r.opsRatio).toBeGreaterThan(0.01);
  });

  it('the cost a task stays flat: 300 tasks a request cost under 4x a task what 30 tasks do', async () => {
    const small = await measureHotPath({ fanout: factory, tasks: 30, rounds: 5, batch: 200 });
    const large = await measureHotPath({ fanout: factory, tasks: 300, rounds: 5, batch: 20 });
    // Measured: the same ~0.9-1.1 KB a task at both sizes, and within 1.2x in time. An N² path (a scan of the call's
    // tasks for each task) would multiply the per-task time by ~10 between these two.
    expect(large.extraBytesPerOp / 300).toBeLessThan((4 * small.extraBytesPerOp) / 30);
    expect(large.fanout.usPerOp / 300).toBeLessThan((4 * small.fanout.usPerOp) / 30);
  });
});
