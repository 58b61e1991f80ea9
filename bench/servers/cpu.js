'use strict';
// The CPU-heavy step of the blocking scenario, in plain JS so the same code runs inline and in a worker thread.

/** Spins a xorshift generator `iterations` times: pure CPU, no allocation, the same work wherever it runs. */
function burn(iterations) {
  let x = 0x9e3779b9 | 0;
  for (let i = 0; i < iterations; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
  }
  return x >>> 0;
}

module.exports = { burn };
