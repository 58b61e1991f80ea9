// worker.ts: the script; each pool thread loads it once
import type { WorkerMethods } from 'express-fanout';
import workerpool from 'workerpool';
import './worker-methods';

function fib(n: number): number {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

workerpool.worker({
  wordCount(text) {
    const words = text.split(/\s+/).filter((word) => word !== '');
    return { words: words.length, longest: words.reduce((a, b) => (b.length > a.length ? b : a), '') };
  },
  fib,
} satisfies WorkerMethods);
