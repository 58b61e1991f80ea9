import { pathToFileURL } from 'node:url';
import { dropCancelledCallsSource, refuseAllSource } from './workerpool-adapter';

/** Exit code the bootstrap substitutes for a `process.exit()` called while the script loads. */
export const LOAD_EXIT_CODE = 0x66616e;

/** Key of the error the bootstrap answers every call with once the script failed to load. */
export const LOAD_FAILURE = 'expressFanoutLoadFailure';

/**
 * The source every thread starts from (as `eval` code). It loads the user's script so that a script that fails
 * to load is told apart from a thread that crashes later: instead of dying (and being respawned by the next call,
 * and dying again) the thread stays up and answers every call with the load error, which the main thread turns
 * into one `WorkerScriptError` for the pool.
 *
 * The script is loaded as users write it: `require()` first, so that `--require` hooks in `execArgv` apply
 * (`tsx/cjs` for a TypeScript script) and CommonJS loads synchronously; `import()` when `require()` refuses an ES
 * module, either because this Node.js cannot `require()` ES modules (`ERR_REQUIRE_ESM`) or because the module
 * uses top-level await (`ERR_REQUIRE_ASYNC_MODULE`, Node.js 20.19+ and 22.12+). Calls sent meanwhile wait in
 * the thread until the script calls `workerpool.worker()`.
 *
 * The bootstrap's own settings are written into the source, so `workerData` is the user's value alone.
 */
export function bootstrapSource(script: string): string {
  const settings = JSON.stringify({
    path: script,
    url: pathToFileURL(script).href,
    loadExitCode: LOAD_EXIT_CODE,
  });
  return `'use strict';
const { parentPort } = require('node:worker_threads');
const settings = ${settings};
const exit = process.exit;
let loading = true;
process.exit = function (code) {
  return exit.call(process, loading ? settings.loadExitCode : code);
};
${dropCancelledCallsSource()}
${refuseAllSource()}
function fail(kind, error) {
  loading = false;
  const failure = { ${LOAD_FAILURE}: true, kind, name: 'Error', message: String(error), stack: '' };
  try {
    if (error !== null && typeof error === 'object') {
      failure.name = String(error.name);
      failure.message = String(error.message);
      failure.stack = String(error.stack);
    }
  } catch {}
  refuseAll(failure);
}
process.once('beforeExit', () => {
  if (parentPort.listenerCount('message') === 0) fail('unregistered', null);
});
let esm = false;
try {
  require(settings.path);
} catch (error) {
  const code = error !== null && typeof error === 'object' ? error.code : undefined;
  if (code === 'ERR_REQUIRE_ESM' || code === 'ERR_REQUIRE_ASYNC_MODULE') esm = true;
  else fail('threw', error);
}
if (esm) import(settings.url).then(() => { loading = false; }, (error) => fail('threw', error));
else loading = false;
`;
}
