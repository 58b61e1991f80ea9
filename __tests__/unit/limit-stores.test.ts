import { MemoryLimitStore, RedisLimitStore } from 'express-fanout';
import { parseRetryAfter } from '../../lib/fetch';

describe('MemoryLimitStore', () => {
  it('grants up to the limit, and again once a permit is released', async () => {
    const store = new MemoryLimitStore();
    expect(await store.acquire('pay', 2, 'a', 10_000)).toBe(true);
    expect(await store.acquire('pay', 2, 'b', 10_000)).toBe(true);
    expect(await store.acquire('pay', 2, 'c', 10_000)).toBe(false);
    expect(await store.acquire('other', 2, 'c', 10_000)).toBe(true);
    await store.release('pay', 'a');
    expect(await store.acquire('pay', 2, 'c', 10_000)).toBe(true);
    expect(store.held('pay')).toBe(2);
  });

  it('lets a lease lapse after its ttl: a holder that never releases cannot keep it', async () => {
    const store = new MemoryLimitStore();
    expect(await store.acquire('pay', 1, 'stuck', 30)).toBe(true);
    expect(await store.acquire('pay', 1, 'next', 30)).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(await store.acquire('pay', 1, 'next', 30)).toBe(true);
  });
});

describe('RedisLimitStore', () => {
  it('needs a client with eval, or a url', () => {
    expect(() => new RedisLimitStore({})).toThrow(
      'Expected `RedisLimitStore` to get a `client` (ioredis) or a `url`',
    );
    expect(() => new RedisLimitStore({ client: {} as never })).toThrow(/`eval` method/);
    expect(() => new RedisLimitStore({ url: 6379 as never })).toThrow(/`url` to be a string/);
  });

  it('runs one script per call on the client it was given, keyed by prefix + name', async () => {
    const calls: unknown[][] = [];
    const client = {
      eval: (...args: unknown[]) => {
        calls.push(args);
        return Promise.resolve(1);
      },
    };
    const store = new RedisLimitStore({ client, prefix: 'p:' });
    expect(await store.acquire('pay', 3, 'lease-1', 1200.4)).toBe(true);
    await store.release('pay', 'lease-1');
    expect(calls.map((c) => c.slice(1))).toEqual([
      [1, 'p:pay', 3, 'lease-1', 1201],
      [1, 'p:pay', 'lease-1'],
    ]);
    expect(String(calls[0]![0])).toContain('ZREMRANGEBYSCORE');
    await store.close(); // a client it was given is the caller's to close
  });
});

describe('Retry-After', () => {
  it('reads delay-seconds and HTTP dates as ms; anything else is 0', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('2', now)).toBe(2000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:03 GMT', now)).toBe(3000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBe(0);
    expect(parseRetryAfter(null, now)).toBe(0);
  });
});
