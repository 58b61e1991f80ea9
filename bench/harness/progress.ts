// What the runner prints while it works: one line per step, and a live counter during each load (updated in
// place on a terminal, every few seconds otherwise, so CI logs stay short).
import { performance } from 'node:perf_hooks';

const began = performance.now();
const tty = Boolean(process.stdout.isTTY);
let liveLine = false;
let lastPlain = 0;

function elapsed(): string {
  const s = Math.round((performance.now() - began) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function clearLive(): void {
  if (liveLine) {
    process.stdout.write('\r\x1b[K');
    liveLine = false;
  }
}

/** A line of the log, prefixed with the time since the run began. */
export function say(text: string): void {
  clearLive();
  process.stdout.write(`[${elapsed()}] ${text}\n`);
}

/** A live status line for the load in progress. */
export function live(text: string): void {
  if (tty) {
    process.stdout.write(`\r\x1b[K[${elapsed()}]   ${text}`);
    liveLine = true;
    return;
  }
  const now = performance.now();
  if (now - lastPlain < 5000) return;
  lastPlain = now;
  process.stdout.write(`[${elapsed()}]   ${text}\n`);
}

export function done(): void {
  clearLive();
  lastPlain = 0;
}

export function secondsSinceStart(): number {
  return (performance.now() - began) / 1000;
}
