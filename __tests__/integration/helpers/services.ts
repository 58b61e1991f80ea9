import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

/** A service in its own process: a fixture run with `node --import tsx`, which prints `READY <port>` when listening. */
export interface Service {
  child: ChildProcess;
  port: number;
  url: string;
  /** Lines the process printed (stdout and stderr), for a failing test's message. */
  output: string[];
  /** SIGTERM (or `signal`), then waits for the exit; SIGKILL after `ms`. */
  stop(signal?: NodeJS.Signals, ms?: number): Promise<number | null>;
  /** Resolves with the exit code once the process is gone. */
  exited: Promise<number | null>;
}

const ROOT = path.join(__dirname, '../../..');

/** Starts `__tests__/fixtures/<fixture>` with `env`, resolving once it printed `READY <port>` (within `ms`). */
export function startService(fixture: string, env: Record<string, string>, ms = 20_000): Promise<Service> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, '__tests__/fixtures', fixture)], {
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'test', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${fixture} did not start within ${ms} ms:\n${output.join('\n')}`));
    }, ms);
    let buffered = '';
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        output.push(line);
        const ready = /^READY (\d+)$/.exec(line.trim());
        if (ready) {
          clearTimeout(timer);
          const port = Number(ready[1]);
          resolve({
            child,
            port,
            url: `http://127.0.0.1:${port}`,
            output,
            exited,
            stop: (signal = 'SIGTERM', limit = 10_000) => {
              if (child.exitCode === null && child.signalCode === null) child.kill(signal);
              const force = setTimeout(() => child.kill('SIGKILL'), limit);
              return exited.finally(() => clearTimeout(force));
            },
          });
        }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => output.push(...chunk.toString().split('\n')));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${fixture} exited with ${code} before it was ready:\n${output.join('\n')}`));
    });
  });
}

/** A free TCP port on 127.0.0.1 (closed again; a tiny race, acceptable on loopback in a test). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface Answer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
  /** Time from sending to the whole answer, ms. */
  ms: number;
}

/** GET `url` on a fresh connection (no keep-alive), with `headers`; rejects on a reset or after `timeoutMs`. */
export function get(url: string, headers: Record<string, string> = {}, timeoutMs = 10_000): Promise<Answer> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode!, body, headers: res.headers, ms: performance.now() - start }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}
