// Starts each measured server in a process of its own and stops it again. Node servers are forked with tsx and an
// IPC channel (they report their port and their own numbers); the Python peer is spawned and watched from /proc.
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import type { ChildMessage, ParentMessage, ServerNumbers } from './protocol';

export const benchDir = join(__dirname, '..');
export const rootDir = join(benchDir, '..');

export interface ServerHandle {
  readonly name: string;
  readonly port: number;
  readonly pid: number;
  /** The file `express-fanout` resolved to in the server, when it loaded the package. */
  readonly packagePath: string | undefined;
  /**
   * The server's own numbers over the window since the last reset; with `reset`, a new window starts (event-loop
   * delay, peak RSS, CPU, counters, latency).
   */
  numbers(reset?: boolean): Promise<ServerNumbers | undefined>;
  stop(): Promise<void>;
  /** The last lines the server wrote to stderr (for the report when it fails). */
  stderrTail(): string;
}

const READY_TIMEOUT_MS = 30_000;

/** Every server process still running, so the runner can end them if it is interrupted. */
const running = new Set<ChildProcess>();

function track(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
}

/** Kills the server processes this runner started and that still run (on SIGINT, SIGTERM or a crash). */
export function killServers(): void {
  for (const child of running) child.kill('SIGKILL');
}
const STOP_TIMEOUT_MS = 4_000;
const REPLY_TIMEOUT_MS = 5_000;

function tail(): { push(chunk: Buffer): void; text(): string } {
  let text = '';
  return {
    push(chunk) {
      text = (text + chunk.toString('utf8')).slice(-4000);
    },
    text: () => text,
  };
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function stopChild(child: ChildProcess, polite: () => void): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  polite();
  if (await waitForExit(child, STOP_TIMEOUT_MS)) return;
  child.kill('SIGKILL');
  await waitForExit(child, STOP_TIMEOUT_MS);
}

/**
 * Pins a process (every thread of it: `taskset -a`) to `cpus` (e.g. `'0'`); returns false when `taskset` is
 * missing or refuses (the run then goes on unpinned, and says so).
 */
export function pin(pid: number, cpus: string): boolean {
  try {
    execFileSync('taskset', ['-a', '-pc', cpus, String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The CPUs `pid` may run on now, as `taskset -pc` lists them (to restore them later). */
export function affinity(pid: number): string | undefined {
  try {
    return /: (.+)$/.exec(execFileSync('taskset', ['-pc', String(pid)], { encoding: 'utf8' }).trim())?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Forks `bench/servers/<file>.ts --variant <variant>` under tsx and waits until it listens (on `cpus` if given).
 * `root`: another checkout of the package to run the server from (its own bench/ and dist/), to measure an older
 * version side by side with this one.
 */
export async function startNodeServer(
  file: string,
  variant: string,
  cpus?: string,
  root: string = rootDir,
): Promise<ServerHandle> {
  const script = join(root, 'bench', 'servers', `${file}.ts`);
  const child = fork(script, ['--variant', variant], {
    cwd: root,
    // tsx's CommonJS hook only: `--import tsx` would also start the ESM loader-hooks thread, a second V8 isolate
    // that adds some 35 MiB to every server's RSS and would flatter the overload scenario's peak / idle ratio.
    execArgv: ['--require', 'tsx/cjs'],
    // Servers run as deployed (NODE_ENV=production unless the caller set it): the package's defaults are then the
    // production ones (Server-Timing off; the overhead scenario measures it on by name), and Express's too.
    env: {
      NODE_ENV: 'production',
      ...process.env,
      TSX_TSCONFIG_PATH: join(root, 'bench', 'tsconfig.run.json'),
    },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  track(child);
  if (cpus !== undefined && child.pid !== undefined) pin(child.pid, cpus);
  const stderr = tail();
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
  child.stdout?.on('data', (chunk: Buffer) => stderr.push(chunk));

  let nextId = 1;
  const pending = new Map<number, (numbers: ServerNumbers | undefined) => void>();
  const ready = new Promise<{ port: number; packagePath: string | undefined }>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`did not listen within ${READY_TIMEOUT_MS / 1000} s`)),
      READY_TIMEOUT_MS,
    );
    child.on('message', (message: ChildMessage) => {
      if (message.type === 'ready') {
        clearTimeout(timer);
        resolve(message);
      } else if (message.type === 'failed') {
        clearTimeout(timer);
        reject(new Error(message.message));
      } else if (message.type === 'numbers') {
        pending.get(message.id)?.(message.numbers);
        pending.delete(message.id);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      for (const resolvePending of pending.values()) resolvePending(undefined);
      pending.clear();
      reject(new Error(`exited (${signal ?? code}) before listening`));
    });
  });

  let started: { port: number; packagePath: string | undefined };
  try {
    started = await ready;
  } catch (error) {
    await stopChild(child, () => child.kill('SIGTERM'));
    const detail = stderr.text().trim().split('\n').slice(-6).join('\n    ');
    throw new Error(
      `${file} --variant ${variant}: ${(error as Error).message}${detail ? `\n    ${detail}` : ''}`,
    );
  }

  const send = (message: ParentMessage): boolean => {
    if (!child.connected) return false;
    child.send(message);
    return true;
  };
  return {
    name: `${file}/${variant}`,
    port: started.port,
    pid: child.pid!,
    packagePath: started.packagePath,
    numbers(reset = false) {
      const id = nextId++;
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          resolve(undefined);
        }, REPLY_TIMEOUT_MS);
        pending.set(id, (numbers) => {
          clearTimeout(timer);
          resolve(numbers);
        });
        if (!send({ type: reset ? 'reset' : 'numbers', id })) {
          clearTimeout(timer);
          pending.delete(id);
          resolve(undefined);
        }
      });
    },
    stop: () => stopChild(child, () => send({ type: 'stop' }) || child.kill('SIGTERM')),
    stderrTail: () => stderr.text(),
  };
}

/** A free TCP port on 127.0.0.1, for a server that cannot report the one it picked. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface PythonPeer {
  python: string;
  versions: string;
}

/**
 * The first Python that can import FastAPI and uvicorn: `$BENCH_PYTHON` if set (and then only it), else `python3`
 * on the PATH, then the system's (Debian's python3-fastapi and python3-uvicorn install for /usr/bin/python3, which
 * a pyenv or venv `python3` may hide).
 */
export function findPython(): PythonPeer | { missing: string } {
  const tried: string[] = [];
  const candidates = process.env.BENCH_PYTHON ? [process.env.BENCH_PYTHON] : ['python3', '/usr/bin/python3'];
  for (const python of candidates) {
    if (python.startsWith('/') && !existsSync(python)) {
      tried.push(python);
      continue;
    }
    try {
      const versions = execFileSync(
        python,
        [
          '-c',
          'import sys, fastapi, uvicorn; print(f"Python {sys.version.split()[0]}, FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}")',
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 15_000 },
      ).trim();
      return { python, versions };
    } catch {
      tried.push(python);
    }
  }
  return { missing: `\`${tried.join('`, `')} -c 'import fastapi, uvicorn'\` failed` };
}

function procStatus(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Spawns the FastAPI peer under uvicorn on a free port and waits until it accepts connections. */
export async function startPythonServer(peer: PythonPeer): Promise<ServerHandle> {
  const port = await freePort();
  const child = spawn(peer.python, [join(benchDir, 'peers', 'fastapi_story.py'), '--port', String(port)], {
    cwd: rootDir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  const stderr = tail();
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  child.stdout.on('data', (chunk: Buffer) => stderr.push(chunk));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stopChild(child, () => child.kill('SIGTERM'));
      throw new Error(
        `fastapi_story.py did not listen: ${stderr.text().trim().split('\n').slice(-4).join(' | ')}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const pid = child.pid!;
  let windowPeak = 0;
  return {
    name: 'peers/fastapi',
    port,
    pid,
    packagePath: undefined,
    async numbers(reset = false) {
      // No IPC here: memory comes from /proc (VmHWM is the lifetime peak); event-loop delay is not measured.
      const rss = procStatus(pid, 'VmRSS');
      if (rss === undefined) return undefined;
      if (reset) windowPeak = rss;
      windowPeak = Math.max(windowPeak, rss, reset ? 0 : (procStatus(pid, 'VmHWM') ?? 0));
      return {
        rss,
        peakRss: windowPeak,
        eventLoopDelay: { p50: NaN, p99: NaN, max: NaN, mean: NaN },
        cpuMs: NaN,
        windowMs: NaN,
        counters: {},
        latency: {},
      };
    },
    stop: () => stopChild(child, () => child.kill('SIGTERM')),
    stderrTail: () => stderr.text(),
  };
}
