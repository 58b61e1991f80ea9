// `stats()` as a flat record of numbers, for the pressure scenarios' traces. Read defensively: the fields that say
// where the queue is (`dependencies`, `eventLoop`, the door's sheds) land from other branches, in a shape this file
// does not assume. Every numeric leaf is kept under its dotted path (`limit`, `workers.pending`,
// `dependencies.slowdb.limit`); an array's items are keyed by their `name`, `dependency` or `id` when they have one,
// a Map's by its keys.

const MAX_DEPTH = 4;
/** More leaves than any stats() has today; a runaway shape (a key per request) stops here. */
const MAX_LEAVES = 400;

function keyOf(item: unknown, index: number): string {
  if (item && typeof item === 'object') {
    for (const field of ['name', 'dependency', 'id'] as const) {
      const value = (item as Record<string, unknown>)[field];
      if (typeof value === 'string' && value) return value;
    }
  }
  return String(index);
}

export function flattenStats(stats: unknown): Record<string, number> {
  const out: Record<string, number> = Object.create(null) as Record<string, number>;
  let leaves = 0;
  const walk = (value: unknown, path: string, depth: number): void => {
    if (leaves >= MAX_LEAVES) return;
    if (typeof value === 'number') {
      if (path) {
        out[path] = value;
        leaves++;
      }
      return;
    }
    if (!value || typeof value !== 'object' || depth >= MAX_DEPTH) return;
    const entries: [string, unknown][] = Array.isArray(value)
      ? value.map((item, i) => [keyOf(item, i), item])
      : value instanceof Map
        ? [...(value as Map<unknown, unknown>)].map(([k, v]) => [String(k), v])
        : Object.entries(value);
    for (const [key, child] of entries) walk(child, path ? `${path}.${key}` : key, depth + 1);
  };
  walk(stats, '', 0);
  return out;
}
