import createDebug from 'debug';
import type { ResolvedOptions } from './options';
import { performance } from 'node:perf_hooks';
import { DeadlineQueue } from './deadline';
import { FleetLimits } from './fleet-limit';
import { Admission } from './admission';
import { acquireLoopMonitor, type LoopMonitorLease } from './loop-monitor';
import { PercentileWindow } from './latency';
import { Scheduler } from './scheduler';
import { SingleFlight } from './single-flight';
import { TokenBucket } from './token-bucket';
import { Transits } from './transit';
import type { FanoutObserver, FanoutStats, ObservedTask, TaskEvent, TaskProbe, TaskStatus } from './types';
import { WorkerPool } from './workers';
import { WorkerScriptError } from './errors';

const debug = createDebug('express-fanout');

/** What {@link Runtime.count} reads of a settled task (task.ts has it; this file imports nothing above it). */
export interface CountedTask {
  readonly name: string;
  readonly status: TaskStatus | undefined;
  readonly usedFallback: boolean;
  readonly submittedAt: number;
  readonly settledAt: number;
  readonly fallbackMs: number;
  readonly error: unknown;
  readonly attempts: number;
  readonly retried: number;
  readonly hedged: number;
  readonly coalesced: boolean;
  /** Its wait for a slot or threads, ms; `NaN` if it never ran. */
  readonly queuedMs: number;
  /** Its dependency's bulkhead, which counts its sheds. */
  readonly bulkhead: { shed: number };
  readonly probe: TaskProbe | null;
}

/**
 * What the middleware knows of one task name: its recent latency, its retry and hedge budgets. The latency is
 * that of the attempts that fulfilled (their time in their slot): what a success takes, which the hedge delay,
 * `skipWhenLate` and the retry check read. Attempts cut short (a hedge won, a timeout) are not samples: their
 * time so far is only a lower bound, and feeding it back would move a percentile hedge delay up with every
 * hedge (a loser cut at delay + d makes the next delay longer).
 */
interface NameState {
  fulfilled: PercentileWindow;
  /** When `skipWhenLate` last saw a fresh sample or let a probe through, performance ms. */
  freshAt: number;
  budgets: { retry: TokenBucket; hedge: TokenBucket } | null;
}

/**
 * A name skipped for this long with no new sample lets one task through: skipping takes no samples, so without
 * it a dependency that became fast again would stay skipped.
 */
const SKIP_PROBE_MS = 1000;

/** Names remembered at most (names are code, but `run(task, name)` may be given anything). */
const MAX_NAMES = 10_000;

/** What one `fanout()` middleware shares across its requests: the scheduler, the counters, the worker pool. */
export class Runtime {
  readonly scheduler: Scheduler;
  closed = false;
  /** close() has waited for every admitted task: no pool may be created any more. */
  private drained = false;
  nextLaneId = 0;
  private pool: WorkerPool | null = null;
  private closing: Promise<void> | null = null;
  /** Attempts aborted while running that keep their slot until they settle or their grace ends (attempt.ts). */
  readonly graced = new Set<{ writeOff(): void }>();
  /** The requests' deadlines, under one timer (deadline.ts). */
  readonly deadlines = new DeadlineQueue();
  readonly counters = {
    completed: 0,
    failed: 0,
    timedOut: 0,
    aborted: 0,
    shed: 0,
    abandoned: 0,
    retries: 0,
    retriesDenied: 0,
    hedges: 0,
    hedgeWins: 0,
    coalesced: 0,
    skipped: 0,
    limitAcquired: 0,
    limitFailOpen: 0,
  };
  /** Fleet-wide limits (`limits`), for tasks with `limit`. */
  readonly limits: FleetLimits;
  /** Executions shared by tasks of equal `key`. */
  readonly flights = new SingleFlight();
  /** `fo.observe()`: integrations' hooks. `observed` is the one check a task pays when there are none. */
  private observers: readonly FanoutObserver[] = [];
  observed = false;
  private readonly names = new Map<string, NameState>();
  /** The transit learned per callee origin by `ctx.fetch()` (transit.ts). */
  readonly transits = new Transits();
  /** The process's event-loop monitor, held while this middleware is open (the adaptive limits read it). */
  readonly loop: LoopMonitorLease | null;

  constructor(readonly options: ResolvedOptions) {
    const { adaptive, admission } = options;
    this.limits = new FleetLimits(options.limits, options.graceMs, this.counters);
    this.loop = adaptive ? acquireLoopMonitor() : null;
    // An adaptive limit means a bulkhead per dependency (each its own limit and admission); a fixed
    // `concurrency` keeps one limit for every task, as the user set it.
    this.scheduler = new Scheduler(
      options.concurrency,
      options.perRequest,
      options.maxQueue,
      adaptive
        ? { partition: { adaptive, admission }, ...(this.loop ? { loop: this.loop } : {}) }
        : admission
          ? { admission: new Admission(admission) }
          : {},
    );
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
    // Worker calls are admitted as IO tasks are (admission.ts, the same settings), by a controller of their own.
    return (this.pool = new WorkerPool(this.options.workers, this.options.admission));
  }

  private name(name: string): NameState {
    let state = this.names.get(name);
    if (state === undefined) {
      if (this.names.size >= MAX_NAMES) this.names.delete(this.names.keys().next().value!);
      state = { fulfilled: new PercentileWindow(), freshAt: 0, budgets: null };
      this.names.set(name, state);
    }
    return state;
  }

  /** An attempt of the name fulfilled after `ms` in its slot, at `now`. */
  fulfilled(name: string, ms: number, now: number): void {
    const state = this.name(name);
    state.fulfilled.add(ms);
    state.freshAt = now;
  }

  /** The name's recent `q` quantile of its fulfilled attempts, ms; `NaN` with fewer than `minSamples` samples. */
  quantile(name: string, q: number, minSamples = 20): number {
    const window = this.names.get(name)?.fulfilled;
    return window !== undefined && window.count >= minSamples ? window.quantile(q) : Number.NaN;
  }

  /**
   * `skipWhenLate`: the name's recent p95 (from 20 samples) when it exceeds `leftMs`, else `NaN`. Every
   * {@link SKIP_PROBE_MS} without a fresh sample one task is let through to take one.
   */
  hopeless(name: string, leftMs: number, now: number): number {
    const state = this.names.get(name);
    if (state === undefined || state.fulfilled.count < 20) return Number.NaN;
    const p95 = state.fulfilled.quantile(0.95);
    if (!(p95 > leftMs)) return Number.NaN;
    if (now - state.freshAt < SKIP_PROBE_MS) return p95;
    state.freshAt = now;
    return Number.NaN;
  }

  /** The name's retry and hedge budgets, made on first use. */
  budgets(name: string): { retry: TokenBucket; hedge: TokenBucket } {
    const state = this.name(name);
    if (state.budgets === null) {
      const now = performance.now();
      state.budgets = {
        retry: new TokenBucket(this.options.retryBudget, now),
        hedge: new TokenBucket(this.options.hedgeBudget, now),
      };
    }
    return state.budgets;
  }

  /** Adds an observer; returns its removal. */
  observe(observer: FanoutObserver): () => void {
    if (typeof observer !== 'object' || observer === null) {
      throw new TypeError(`Expected the observer to be an object, got ${typeof observer}`);
    }
    this.observers = [...this.observers, observer];
    this.observed = true;
    return () => {
      this.observers = this.observers.filter((o) => o !== observer);
      this.observed = this.observers.length > 0;
    };
  }

  /** The observers' probes for a task just created, combined into one; null when none wants one. */
  probe(task: ObservedTask): TaskProbe | null {
    let probes: TaskProbe[] | null = null;
    for (const observer of this.observers) {
      if (typeof observer.task !== 'function') continue;
      try {
        const probe = observer.task(task);
        if (probe) (probes ??= []).push(probe);
      } catch (error) {
        debug('an observer threw: %O', error);
      }
    }
    if (probes === null) return null;
    return probes.length === 1 ? probes[0]! : combine(probes);
  }

  /** Counts a settled task and tells `onTask`, then the observers. */
  count(task: CountedTask): void {
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
        task.bulkhead.shed++;
        // `error` is whatever a failed fallback threw (null, a revoked Proxy …): only debug formats it.
        debug('shed %s: %O', task.name, task.error);
        break;
      case 'skipped':
        c.skipped++;
        break;
    }
    const onTask = this.options.onTask;
    if (!onTask && !this.observed) return;
    const event: TaskEvent = {
      name: task.name,
      status: task.status!,
      fallback: task.usedFallback,
      ms: task.settledAt + task.fallbackMs - task.submittedAt,
      attempts: task.attempts,
    };
    if (task.coalesced) event.coalesced = true;
    if (task.fallbackMs > 0) event.fallbackMs = task.fallbackMs;
    const queued = task.queuedMs;
    if (queued === queued) event.queuedMs = queued;
    if (task.retried > 0) event.retried = task.retried;
    if (task.hedged > 0) event.hedged = task.hedged;
    if (task.status !== 'fulfilled') event.error = task.error;
    if (onTask) {
      try {
        onTask(event);
      } catch (error) {
        debug('onTask threw: %O', error);
      }
    }
    if (!this.observed) return;
    if (task.probe !== null) {
      try {
        task.probe.end(event);
      } catch (error) {
        debug('an observer threw: %O', error);
      }
    }
    for (const observer of this.observers) {
      if (typeof observer.settled !== 'function') continue;
      try {
        observer.settled(event);
      } catch (error) {
        debug('an observer threw: %O', error);
      }
    }
  }

  abandon(name: string): void {
    this.counters.abandoned++;
    debug('abandoned %s: it ignored its abort signal for %d ms', name, this.options.graceMs);
  }

  /** The middleware adds `eventLoop` (the door's, middleware.ts). */
  stats(): Omit<FanoutStats, 'eventLoop'> {
    return {
      running: this.scheduler.running,
      queued: this.scheduler.queued,
      limit: this.scheduler.limit,
      ...this.counters,
      dependencies: this.scheduler.dependencies(),
      workers: this.pool
        ? this.pool.stats()
        : { busy: 0, idle: 0, pending: 0, shed: 0, terminated: 0, crashed: 0 },
      transit: this.transits.snapshot(performance.now()),
    };
  }

  /**
   * A task that ignores its abort keeps its slot until its grace timer writes it off, and that timer belongs to
   * the clock installed when it was set: one set under fake timers never fires once a test is back on real
   * ones, and close() would wait forever. One timer of close()'s own, on today's clock, bounds them all: the
   * first of the two to fire writes the attempt off (once).
   */
  private boundGraces(): NodeJS.Timeout | undefined {
    if (this.graced.size === 0) return undefined;
    const timer = setTimeout(() => {
      for (const attempt of [...this.graced]) attempt.writeOff();
    }, this.options.graceMs);
    timer.unref();
    return timer;
  }

  /** Stop admitting, let what runs settle (bounded by budgets and graceMs), then end the worker threads. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    // The loop monitor at once, as the door's lease (middleware.ts): tasks still running take samples without
    // the loop's share, and a monitor held until a drain that may never come (a test's fake clock, a stuck task)
    // would keep ticking with a stale due time.
    this.loop?.release();
    const bound = this.boundGraces();
    // IO tasks first (one may still call a worker), then worker calls, which hold no IO slot.
    this.closing = this.scheduler
      .idle()
      .then(() => {
        if (bound) clearTimeout(bound);
        return this.pool?.drained();
      })
      .then(() => {
        this.drained = true;
        return this.pool?.close();
      });
    return this.closing;
  }
}

/**
 * Several observers' probes as one: each `run` wraps the next (the first observer's outermost), so every one
 * sees the function run inside it.
 */
function combine(probes: readonly TaskProbe[]): TaskProbe {
  return {
    run<T>(attempt: number, fn: () => T): T {
      let wrapped = fn;
      for (let i = probes.length - 1; i >= 0; i--) {
        const probe = probes[i]!;
        const inner = wrapped;
        wrapped = () => probe.run(attempt, inner);
      }
      return wrapped();
    },
    end(event: TaskEvent): void {
      for (const probe of probes) {
        try {
          probe.end(event);
        } catch (error) {
          debug('an observer threw: %O', error);
        }
      }
    },
  };
}
