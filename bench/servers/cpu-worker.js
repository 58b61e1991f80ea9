'use strict';
// The worker script of the blocking scenario's pool variant: `req.fanout.worker('burn', [n])` runs it here.
const workerpool = require('workerpool');
const { burn } = require('./cpu.js');

workerpool.worker({ burn });
