import { performance } from 'node:perf_hooks';
import type { LimitStore } from '../types';

/**
 * The default store of a fleet-wide limit: permits counted in this process, for this middleware only (give
 * the same instance to several `fanout()` middlewares to share it). Leases lapse after their `ttlMs`, as in the
 * Redis store, so an attempt that ignores its signal cannot hold a permit past its deadline + `graceMs`.
 */
export class MemoryLimitStore implements LimitStore {
  /** Lease id to expiry (performance ms), per limit name. */
  private readonly leases = new Map<string, Map<string, number>>();

  acquire(name: string, limit: number, leaseId: string, ttlMs: number): Promise<boolean> {
    return Promise.resolve(this.tryAcquire(name, limit, leaseId, ttlMs));
  }

  release(name: string, leaseId: string): Promise<void> {
    const held = this.leases.get(name);
    if (held !== undefined && held.delete(leaseId) && held.size === 0) this.leases.delete(name);
    return Promise.resolve();
  }

  /** Permits held now (expired leases dropped), for tests and stats. */
  held(name: string): number {
    const held = this.leases.get(name);
    if (held === undefined) return 0;
    purge(held, performance.now());
    return held.size;
  }

  private tryAcquire(name: string, limit: number, leaseId: string, ttlMs: number): boolean {
    const now = performance.now();
    let held = this.leases.get(name);
    if (held === undefined) this.leases.set(name, (held = new Map()));
    else if (held.size >= limit) purge(held, now);
    if (held.size >= limit) return false;
    held.set(leaseId, now + ttlMs);
    return true;
  }
}

function purge(held: Map<string, number>, now: number): void {
  for (const [id, expiry] of held) if (expiry <= now) held.delete(id);
}
