// worker-methods.ts: the script's methods, as req.fanout.worker() and ctx.worker() check them
export interface WordCount {
  words: number;
  longest: string;
}

declare module 'express-fanout' {
  interface WorkerMethods {
    wordCount(text: string): WordCount;
    fib(n: number): number;
  }
}
