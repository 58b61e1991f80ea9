'use strict';
// The worker script of the mixed scenario: `ctx.worker('fib', [n])` runs it here.
const workerpool = require('workerpool');

function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

workerpool.worker({ fib });
