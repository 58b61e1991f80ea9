// Running one variant: start its server, load it with progress, always stop it; skip it with a clear line when it
// cannot run (package not built, server failing to start).
import { type LoadOptions, type LoadResult, runLoad } from '../harness/load';
import { done, live, say } from '../harness/progress';
import {
  type PythonPeer,
  type ServerHandle,
  startNodeServer,
  startPythonServer,
} from '../harness/server-process';
import { fmt } from './format';
import type { Environment, VariantRun } from './types';

export interface Start {
  /** `cpus`: pin the server there (`taskset -a -pc`), e.g. `'0'`. */
  node?: { file: string; variant: string; cpus?: string; root?: string };
  python?: PythonPeer;
}

function start(how: Start): Promise<ServerHandle> {
  if (how.python) return startPythonServer(how.python);
  return startNodeServer(how.node!.file, how.node!.variant, how.node!.cpus, how.node!.root);
}

function progress(label: string, expectS?: number): LoadOptions['onTick'] {
  return (responses, elapsedS) =>
    live(
      `${label}: ${responses.toLocaleString('en-US')} responses, ${elapsedS.toFixed(0)}${expectS ? ` / ${expectS}` : ''} s`,
    );
}

export async function load(server: ServerHandle, label: string, options: LoadOptions): Promise<LoadResult> {
  try {
    return await runLoad(`http://127.0.0.1:${server.port}`, {
      ...options,
      onTick: progress(label, options.durationS),
    });
  } finally {
    done();
  }
}

/** Where `express-fanout` resolved in the servers that loaded it (dist/, as users get it). */
export const packagePaths = new Set<string>();

/** Starts the variant's server; a failure to start marks the variant `skipped` (with the reason) instead. */
export async function startVariant(run: VariantRun, how: Start): Promise<ServerHandle | undefined> {
  try {
    const server = await start(how);
    if (server.packagePath) packagePaths.add(server.packagePath);
    return server;
  } catch (error) {
    const first = (error as Error).message.split('\n')[0]!;
    run.skipped = `server did not start: ${first.length > 160 ? `${first.slice(0, 157)}...` : first}`;
    say(`  ! ${run.label}: ${run.skipped}`);
    return undefined;
  }
}

/** Starts the server, runs `body` against it, and always stops it; a failure to start becomes `skipped`. */
export async function withServer(
  run: VariantRun,
  how: Start,
  body: (server: ServerHandle) => Promise<void>,
): Promise<void> {
  const server = await startVariant(run, how);
  if (!server) return;
  try {
    await body(server);
  } finally {
    await server.stop();
  }
}

export function skipPackage(run: VariantRun, env: Environment): boolean {
  if (run.kind === 'package' && !env.packageBuilt) {
    run.skipped = 'dist/ is not built (npm run build)';
    say(`  - ${run.label}: skipped, ${run.skipped}`);
    return true;
  }
  return false;
}

export function summary(run: VariantRun, result: LoadResult | undefined): string {
  if (!result) return run.skipped ? `skipped (${run.skipped})` : 'no result';
  const extra =
    result.non2xx || result.errors
      ? `, non-2xx ${result.non2xx.toLocaleString('en-US')}, errors ${result.errors.toLocaleString('en-US')}`
      : '';
  return `p50 ${fmt.ms(result.latency.p50)} ms, p99 ${fmt.ms(result.latency.p99)} ms, ${fmt.rps(result.rps)} req/s${extra}`;
}
