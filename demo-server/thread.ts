import { extname } from 'node:path';
import type { WorkerOptions } from 'node:worker_threads';

/**
 * How to start a worker thread on one of the demo's own modules. Compiled (`npm start` runs
 * `build/demo-server/*.js`) the module runs as it is; from the TypeScript sources (jest, `tsx`) the thread
 * needs tsx's require hook, as threads do not inherit the parent's loaders.
 */
export function threadEntry(moduleFile: string): {
  filename: string;
  options: Pick<WorkerOptions, 'execArgv'>;
} {
  const ts = extname(moduleFile) === '.ts';
  return {
    filename: moduleFile,
    options: { execArgv: ts ? ['--require', require.resolve('tsx/cjs')] : [] },
  };
}

/**
 * The `script` and `execArgv` of the fan-out's worker pool for the demo's worker script: `worker.js` compiled,
 * or `worker.ts` from the sources with tsx's require hook (the pool loads its script with `require()` first).
 */
export function poolEntry(scriptFile: string): { script: string; execArgv: string[] } {
  const { filename, options } = threadEntry(scriptFile);
  return { script: filename, execArgv: options.execArgv ?? [] };
}
