// The demo's worker script: the methods `req.fanout.worker()` runs on the pool's threads. The pool imports
// this module once per thread; `workerpool.worker()` registers the methods.
import type { WorkerMethods } from 'express-fanout';
import workerpool from 'workerpool';
import { fib } from './cpu';
import { openDatabase, regionReport, type DemoDatabase } from './db';
import './worker-methods'; // the method types this script implements

/**
 * One read-only connection per database file, opened by the thread's first query on it. The file comes with
 * each call: a pool has no per-thread configuration, and an environment variable would be read by each thread
 * when it starts, including a thread started to replace a terminated one, long after the demo set it (and two
 * demos in one process, as in the tests, would share it).
 */
const databases = new Map<string, DemoDatabase>();

const methods = {
  regionReport(file, region) {
    let db = databases.get(file);
    if (db === undefined) {
      db = openDatabase(file);
      databases.set(file, db);
    }
    return regionReport(db, region);
  },
  fib,
} satisfies WorkerMethods;

workerpool.worker(methods);
