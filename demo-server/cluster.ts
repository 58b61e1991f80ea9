// The demo under node:cluster: `WEB_CONCURRENCY=2 npm start` forks that many workers sharing the port. The primary
// forwards SIGTERM and SIGINT to every worker and exits once they all have: each drains (answers in flight go
// out, new requests on kept-alive connections get 503 + Connection: close), closes its middleware and exits.
import cluster, { type Worker } from 'node:cluster';

export interface ClusterOptions {
  /** Workers to fork. */
  workers: number;
  /** Longest the primary waits for its workers after a signal before it kills them. */
  shutdownLimitMs: number;
  log?: (line: string) => void;
}

/** In the primary: forks the workers, forwards SIGTERM/SIGINT, exits when they have. Resolves never. */
export function runPrimary(options: ClusterOptions): void {
  const log = options.log ?? ((line: string) => console.log(line));
  let stopping: NodeJS.Signals | null = null;
  const fork = (): Worker => cluster.fork();
  for (let i = 0; i < options.workers; i++) fork();

  cluster.on('exit', (worker, code, signal) => {
    if (stopping === null) {
      // A worker that crashed while serving is replaced; the others keep serving meanwhile.
      log(`worker ${worker.process.pid} exited (${signal ?? code}); starting another`);
      fork();
      return;
    }
    if (Object.keys(cluster.workers ?? {}).length === 0) {
      log(`${stopping}: every worker has stopped`);
      process.exit(0);
    }
  });

  const stop = (signal: NodeJS.Signals): void => {
    if (stopping !== null) return;
    stopping = signal;
    log(`${signal}: forwarding it to ${Object.keys(cluster.workers ?? {}).length} workers`);
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
    const limit = setTimeout(() => {
      log(`workers still running after ${options.shutdownLimitMs} ms; killing them`);
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
    }, options.shutdownLimitMs);
    limit.unref();
  };
  process.on('SIGTERM', stop).on('SIGINT', stop);
}

/** `WEB_CONCURRENCY` as a count of workers: 1 (no cluster) when unset; an integer from 1 to 256 otherwise. */
export function webConcurrency(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 1;
  const n = /^\d{1,3}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1 && n <= 256))
    throw new Error(`Expected WEB_CONCURRENCY to be an integer from 1 to 256, got \`${raw}\``);
  return n;
}
