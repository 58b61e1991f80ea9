import createDebug from 'debug';
import type { ResolvedOptions } from './options';
import { performance } from 'node:perf_hooks';
import { AdaptiveLimit } from './adaptive-limit';
import { Admission } from './admission';
import { Scheduler } from './scheduler';
import type { TaskRun } from './task';
import type { FanoutStats, TaskEvent } from './types';
import { WorkerPool } from './workers';
import { WorkerScriptError } from './errors';

const debug = createDebug('express-fanout');

/** What one `fanout()` middleware shares across its requests: the scheduler, the counters, the worker pool. */
export class Runtime {
  readonly scheduler: Scheduler;
  closed = false;
  /** close() has waited for every admitted task: no pool may be created any more. */
  private drained = false;
  nextLaneId = 0;
  private pool: WorkerPool | null = null;
  private closing: Promise<void> | null = null;
  private readonly counters = { completed: 0, failed: 0, timedOut: 0, aborted: 0, shed: 0, abandoned: 0 };

  constructor(readonly options: ResolvedOptions) {
    const { adaptive, admission } = options;
    this.scheduler = new Scheduler(options.concurrency, options.perRequest, options.maxQueue, {
      ...(admission ? { admission: new Admission(admission) } : {}),
      ...(adaptive ? { adaptive: new AdaptiveLimit(adaptive, performance.now()) } : {}),
    });
  }

  /** The worker pool, created on first use. */
  workerPool(): WorkerPool {
    if (this.pool) return this.pool;
    if (this.options.workers === false) {
      throw new WorkerScriptError(
        'Worker threads are disabled (`workers: false`); enable them to use `worker()`',
      );
    }
    // During close() admitted tasks still run to their end, and may need the pool for the first time.
    if (this.drained) throw new WorkerScriptError('The middleware is closed; its worker pool is gone');
    return (this.pool = new WorkerPool(this.options.workers));
  }

  /** Counts a settled task and tells `onTask`. */
  count(task: TaskRun): void {
    const c = this.counters;
    switch (task.status) {
      case 'fulfilled':
        c.completed++;
        break;
      case 'rejected':
        c.failed++;
        break;
      case 'timeout':
        c.timedOut++;
        break;
      case 'aborted':
        c.aborted++;
        break;
      case 'shed':
        c.shed++;
        debug('shed %s: %s', task.name, (task.error as Error).message);
        break;
    }
    const onTask = this.options.onTask;
    if (!onTask) return;
    const event: TaskEvent = {
      name: task.name,
      status: task.status!,
      fallback: task.usedFallback,
      ms: task.settledAt + task.fallbackMs - task.submittedAt,
    };
    if (task.fallbackMs > 0) event.fallbackMs = task.fallbackMs;
    if (task.status !== 'fulfilled') event.error = task.error;
    try {
      onTask(event);
    } catch (error) {
      debug('onTask threw: %O', error);
    }
  }

  abandon(task: TaskRun): void {
    this.counters.abandoned++;
    debug('abandoned %s: it ignored its abort signal for %d ms', task.name, this.options.graceMs);
  }

  stats(): FanoutStats {
    return {
      running: this.scheduler.running,
      queued: this.scheduler.queued,
      limit: this.scheduler.limit,
      ...this.counters,
      workers: this.pool ? this.pool.stats() : { busy: 0, idle: 0, pending: 0, terminated: 0, crashed: 0 },
    };
  }

  /** Stop admitting, let what runs settle (bounded by budgets and graceMs), then end the worker threads. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    // IO tasks first (one may still call a worker), then worker calls, which hold no IO slot.
    this.closing = this.scheduler
      .idle()
      .then(() => this.pool?.drained())
      .then(() => {
        this.drained = true;
        return this.pool?.close();
      });
    return this.closing;
  }
}
