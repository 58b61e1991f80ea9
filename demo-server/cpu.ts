// The demo's CPU-bound step: Fibonacci the naive way, exponential on purpose. fib(34) keeps a core busy for
// ~100-180 ms on the small shared machine it was measured on; nothing else runs on that thread meanwhile.

/** `?n=` of `/cpu` and `/cpu/inline` unless given: ~100-180 ms of CPU here. */
export const CPU_N = 34;
/** Largest `?n=`: fib(40) takes ~2 s, past the demo's budget, to show a thread terminated at the deadline. */
export const MAX_CPU_N = 40;

/** The n-th Fibonacci number, by naive recursion: ~1.6^n calls, no allocation, no IO. */
export function fib(n: number): number {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}
