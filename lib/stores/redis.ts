import type { LimitStore } from '../types';

/** What the store needs of a Redis client: `eval`, as `ioredis` has it (an `ioredis` `Redis` or `Cluster`). */
export interface RedisEvalClient {
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  quit?(): Promise<unknown>;
}

export interface RedisLimitStoreOptions {
  /** A connected client (`new Redis(url)` from `ioredis`). The store never closes a client it was given. */
  client?: RedisEvalClient;
  /** Or a `redis://` URL: the store then loads `ioredis` (an optional peer dependency) and connects on first use. */
  url?: string;
  /** Prefix of the keys (one sorted set per limit name). @default 'fanout:limit:' */
  prefix?: string;
}

/**
 * One sorted set per limit: members are lease ids, scores their expiry in Redis's own clock (`TIME`), so the
 * processes' clocks never meet. Acquiring first drops the expired leases, then adds one if fewer than the limit
 * remain, atomically (one Lua script): a process killed while holding permits loses them at their expiry (the
 * task's deadline + `graceMs`), never later.
 */
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1`;

const RELEASE = `return redis.call('ZREM', KEYS[1], ARGV[1])`;

/**
 * A fleet-wide limit's store on Redis: `limits: { payments: { concurrency: 100, store: new RedisLimitStore({
 * client: new Redis(url) }) } }` caps the tasks with `limit: 'payments'` across every process using the same
 * Redis. When Redis fails or answers late (`stats().limitFailOpen`), the attempt falls back to an in-process
 * bound of the same concurrency (README, "Across processes").
 */
export class RedisLimitStore implements LimitStore {
  private readonly prefix: string;
  private client: RedisEvalClient | Promise<RedisEvalClient> | null;
  private readonly url: string | undefined;
  private readonly own: boolean;

  constructor(options: RedisLimitStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(
        'Expected the options of `RedisLimitStore` to be an object `{ client } or { url }`',
      );
    }
    const { client, url, prefix = 'fanout:limit:' } = options;
    if (client === undefined && url === undefined) {
      throw new TypeError('Expected `RedisLimitStore` to get a `client` (ioredis) or a `url`');
    }
    if (client !== undefined && typeof (client as { eval?: unknown }).eval !== 'function') {
      throw new TypeError('Expected `RedisLimitStore`’s `client` to have an `eval` method (ioredis)');
    }
    if (url !== undefined && typeof url !== 'string') {
      throw new TypeError(`Expected \`RedisLimitStore\`’s \`url\` to be a string, got ${typeof url}`);
    }
    if (typeof prefix !== 'string') {
      throw new TypeError(`Expected \`RedisLimitStore\`’s \`prefix\` to be a string, got ${typeof prefix}`);
    }
    this.client = client ?? null;
    this.url = url;
    this.own = client === undefined;
    this.prefix = prefix;
    // Loading the client and connecting take longer than a task should wait: start now, at `fanout()` time.
    if (this.own) void Promise.resolve(this.connect()).catch(() => {});
  }

  async acquire(name: string, limit: number, leaseId: string, ttlMs: number): Promise<boolean> {
    const client = await this.connect();
    const result = await client.eval(ACQUIRE, 1, this.prefix + name, limit, leaseId, Math.ceil(ttlMs));
    return result === 1;
  }

  async release(name: string, leaseId: string): Promise<void> {
    const client = await this.connect();
    await client.eval(RELEASE, 1, this.prefix + name, leaseId);
  }

  /** Closes the connection the store opened from `url` (a `client` it was given is the caller's). */
  async close(): Promise<void> {
    if (!this.own || this.client === null) return;
    const client = await this.client;
    this.client = null;
    await client.quit?.();
  }

  private connect(): Promise<RedisEvalClient> | RedisEvalClient {
    if (this.client !== null) return this.client;
    const url = this.url!;
    const connecting = import('ioredis').then((mod) => {
      const Redis = (mod as unknown as { default: typeof import('ioredis').default }).default;
      // Fail fast when Redis is down: the limit falls back to the local bound instead of waiting.
      const client = new Redis(url, { maxRetriesPerRequest: 0, connectTimeout: 1000 });
      client.on('error', () => {});
      return client as unknown as RedisEvalClient;
    });
    this.client = connecting;
    connecting.then(
      (client) => {
        if (this.client === connecting) this.client = client;
      },
      () => {
        if (this.client === connecting) this.client = null;
      },
    );
    return connecting;
  }
}
