// worker.js: loaded by every thread of the pool (CommonJS here; an ES module works too)
const { createHash } = require('node:crypto');
const workerpool = require('workerpool');

function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

workerpool.worker({
  fib,
  sha256: (buffer) => createHash('sha256').update(new Uint8Array(buffer)).digest('hex'), // a moved ArrayBuffer
});
