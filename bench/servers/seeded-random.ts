/**
 * mulberry32: a seeded generator of numbers in [0, 1), so that every variant of a scenario meets the same
 * sequence of slow or failing calls (in call order) and none is luckier than another.
 */
export function seededRandom(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
