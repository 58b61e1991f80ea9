/**
 * Generic validators shared by every options resolver. This file imports nothing of ours, so any resolver
 * (options.ts, adaptive-limit.ts, admission.ts, fleet-limit.ts, workers/options.ts, task-def.ts …) can use it
 * without an import circle.
 */

/** setTimeout fires at once above this; no budget or timeout may exceed it. */
export const MAX_TIMER_MS = 2_147_483_647;

export function describe(value: unknown): string {
  let shown: string;
  try {
    shown = typeof value === 'function' ? `[Function ${value.name || 'anonymous'}]` : String(value);
  } catch {
    shown = Object.prototype.toString.call(value);
  }
  return `\`${shown}\` (${value === null ? 'null' : typeof value})`;
}

/** Throws ``Expected `name` to be an integer >= min, got `value` (type)``; returns the value otherwise. */
export function integer(name: string, value: unknown, min: number, max = MAX_TIMER_MS): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new TypeError(`Expected \`${name}\` to be an integer ${range}, got ${describe(value)}`);
  }
  return value;
}

/** The closest of `candidates` to `word`, if it is close enough to be a likely typo. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const d = distance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}

/** Throws on a key that is not in `known`, suggesting the closest one. */
export function rejectUnknown(object: object, known: readonly string[], prefix = ''): void {
  for (const key of Object.keys(object)) {
    if (known.includes(key)) continue;
    const guess = didYouMean(key, known);
    throw new TypeError(
      `Unknown option \`${prefix}${key}\`.` +
        (guess
          ? ` Did you mean \`${prefix}${guess}\`?`
          : ` Known options: ${known.map((k) => `\`${prefix}${k}\``).join(', ')}`),
    );
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
