import { randomBytes } from 'node:crypto';
import createDebug from 'debug';
import { remaining } from './deadline';
import { describe, integer, isPlainObject, rejectUnknown } from './validate';
import { MemoryLimitStore } from './stores/memory';
import type { LimitOptions, LimitStore, TaskContext, TaskFn } from './types';

const debug = createDebug('express-fanout');

/** A limit after validation. */
export interface ResolvedLimit {
  name: string;
  concurrency: number;
  store: LimitStore;
}

export type ResolvedLimits = ReadonlyMap<string, ResolvedLimit>;

/** How long one store call (a Redis round trip) may take before the attempt falls back to the local bound. */
const STORE_TIMEOUT_MS = 250;
/** Polling for a permit: first and longest wait between tries, ms (jittered, bounded by the deadline). */
const FIRST_POLL_MS = 2;
const MAX_POLL_MS = 50;

const LIMIT_KEYS = ['concurrency', 'store'];

/** `limits: { payments: { concurrency: 100, store? } }`, validated at `fanout()` time. */
export function resolveLimits(value: unknown): ResolvedLimits {
  const out = new Map<string, ResolvedLimit>();
  if (value === undefined) return out;
  if (!isPlainObject(value)) {
    throw new TypeError(
      `Expected \`limits\` to be an object of named limits \`{ payments: { concurrency: 100 } }\`, got ${describe(value)}`,
    );
  }
  let local: MemoryLimitStore | undefined;
  for (const name of Object.keys(value)) {
    const limit = value[name];
    if (!isPlainObject(limit)) {
      throw new TypeError(
        `Expected \`limits.${name}\` to be an object \`{ concurrency, store? }\`, got ${describe(limit)}`,
      );
    }
    rejectUnknown(limit, LIMIT_KEYS, `limits.${name}.`);
    const { concurrency, store } = limit as unknown as LimitOptions;
    const n = integer(`limits.${name}.concurrency`, concurrency, 1, Number.MAX_SAFE_INTEGER);
    if (
      store !== undefined &&
      (typeof store !== 'object' ||
        store === null ||
        typeof store.acquire !== 'function' ||
        typeof store.release !== 'function')
    ) {
      throw new TypeError(
        `Expected \`limits.${name}.store\` to be a store with \`acquire\` and \`release\` (MemoryLimitStore, ` +
          `RedisLimitStore), got ${describe(store)}`,
      );
    }
    out.set(name, { name, concurrency: n, store: store ?? (local ??= new MemoryLimitStore()) });
  }
  return out;
}

/** The counters the limits update (the runtime's). */
export interface LimitCounters {
  limitAcquired: number;
  limitFailOpen: number;
}

/** A permit held by one attempt. */
interface Lease {
  readonly store: LimitStore;
  readonly id: string;
}

/**
 * The fleet-wide limits of one middleware: an attempt of a task with `limit` waits here for a permit (after it
 * got its slot), runs, and gives the permit back when its promise settles. The wait polls the store with a
 * jittered backoff, bounded by the task's deadline and ended by its signal. A store that fails or answers late
 * (Redis down) fails open to an in-process bound of the same concurrency, counted in `stats().limitFailOpen`.
 */
export class FleetLimits {
  /** The fail-open bound: per limit name, in this process. */
  private readonly local = new MemoryLimitStore();
  private readonly prefix = `${process.pid}-${randomBytes(4).toString('hex')}-`;
  private next = 0;

  constructor(
    private readonly limits: ResolvedLimits,
    private readonly graceMs: number,
    private readonly counters: LimitCounters,
  ) {}

  async run(
    name: string,
    run: TaskFn,
    ctx: TaskContext,
    signal: AbortSignal,
    deadline: number,
  ): Promise<unknown> {
    const limit = this.limits.get(name);
    if (limit === undefined) {
      const known = [...this.limits.keys()];
      throw new TypeError(
        `Unknown limit \`${name}\`: the middleware's \`limits\` option has ` +
          (known.length ? known.map((k) => `\`${k}\``).join(', ') : 'none'),
      );
    }
    const lease = await this.acquire(limit, signal, deadline);
    try {
      return await run(ctx);
    } finally {
      lease.store.release(limit.name, lease.id).catch((error: unknown) => {
        // The lease lapses on its own at the task's deadline + graceMs.
        debug('releasing a permit of limit %s failed: %O', limit.name, error);
      });
    }
  }

  private async acquire(limit: ResolvedLimit, signal: AbortSignal, deadline: number): Promise<Lease> {
    const id = this.prefix + (this.next++).toString(36);
    let store = limit.store;
    let wait = FIRST_POLL_MS;
    for (;;) {
      signal.throwIfAborted();
      const ttl = Math.ceil(remaining(deadline)) + this.graceMs;
      let got: boolean;
      const asked = store.acquire(limit.name, limit.concurrency, id, ttl);
      try {
        got = await within(asked, STORE_TIMEOUT_MS);
      } catch (error) {
        // An answer that comes after all must not hold a permit nobody uses until it lapses.
        const late = store;
        asked.then(
          (taken) => {
            if (taken) late.release(limit.name, id).catch(() => {});
          },
          () => {},
        );
        if (store === this.local) throw error;
        debug('limit %s: the store failed, falling back to the local bound: %O', limit.name, error);
        this.counters.limitFailOpen++;
        store = this.local;
        continue;
      }
      if (got) {
        // Aborted while the store answered: give the permit back rather than hold it for a task that is over.
        if (signal.aborted) {
          const taken = store;
          taken.release(limit.name, id).catch(() => {});
          signal.throwIfAborted();
        }
        this.counters.limitAcquired++;
        return { store, id };
      }
      // Full: try again after a jittered wait, never past the deadline (the task's timer aborts it there).
      await sleep(Math.max(1, Math.min(remaining(deadline), wait * (0.5 + Math.random()))), signal);
      wait = Math.min(wait * 2, MAX_POLL_MS);
    }
  }
}

/** `promise`, or a rejection after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the limit store did not answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first; no timer or listener outlives it. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    timer.unref();
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** The hidden method of a task's context that runs it under a fleet limit (attempt.ts defines it). */
export const RUN_LIMITED = Symbol('express-fanout.runLimited');

interface LimitedContext {
  [RUN_LIMITED](limit: string, run: TaskFn): Promise<unknown>;
}

/** `run` of a task with `limit`: the attempt waits for a permit before calling it. */
export function limitedRun(limit: string, run: TaskFn): TaskFn {
  return (ctx) => (ctx as unknown as LimitedContext)[RUN_LIMITED](limit, run);
}
