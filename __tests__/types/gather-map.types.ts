// Compile-time checks (tsc -p .): gather() with its tasks given as a function of the request types `map`'s
// values as the object form does. It once saw every value as `unknown` (found by check:package's consumer).
import { gather } from 'express-fanout';

export const mapSeesTheValuesOfTasksGivenAsAFunctionOfTheRequest = gather(
  (req) => ({
    path: () => req.path,
    n: { run: ({ signal }) => (signal.aborted ? 0 : 1), fallback: 'none' },
  }),
  {
    map: (values) => {
      const path: string = values.path;
      const n: number | string = values.n;
      // @ts-expect-error: `n` may be its fallback, a string
      const wrong: number = values.n;
      return { length: path.length, n, wrong };
    },
  },
);

export const mapSeesTheValuesOfAnObjectOfTasks = gather(
  { path: () => '/', n: { run: () => 1, fallback: 'none' } },
  { map: (values) => ({ length: values.path.length, n: values.n satisfies number | string }) },
);
