// The machine and software versions printed at the top of every result: absolute numbers mean little without them.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { rootDir } from './server-process';

export interface Machine {
  date: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  packageVersion: string;
  express: string;
  autocannon: string;
  commit: string;
  loadAverageAtStart: number[];
  /** Set when the run ends. */
  loadAverageAtEnd?: number[];
}

function versionOf(name: string): string {
  try {
    const file = join(rootDir, 'node_modules', name, 'package.json');
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: rootDir,
      encoding: 'utf8',
    }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'lib'], {
      cwd: rootDir,
      encoding: 'utf8',
    });
    return dirty.trim() ? `${head} + uncommitted changes in lib/` : head;
  } catch {
    return 'unknown';
  }
}

export function loadAverage(): number[] {
  return os.loadavg().map((n) => Math.round(n * 100) / 100);
}

export function machine(): Machine {
  const cpus = os.cpus();
  const pkg = JSON.parse(readFileSync(join(rootDir, 'package.json'), 'utf8')) as { version: string };
  return {
    date: new Date().toISOString(),
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    packageVersion: pkg.version,
    express: versionOf('express'),
    autocannon: versionOf('autocannon'),
    commit: commit(),
    loadAverageAtStart: loadAverage(),
  };
}
