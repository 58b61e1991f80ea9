// The last good answer of each slow call, in an asynchronous in-process cache: the shape of a Redis or async
// LRU lookup (`await cache.get(key)`), which is what a fallback reads in real services ("serve stale").
import { setImmediate as nextTurn } from 'node:timers/promises';

export interface Remembered<V> {
  value: V;
  /** When it was stored, epoch ms. */
  at: number;
}

export class LastGood<V> {
  private readonly entries = new Map<string, Remembered<V>>();

  constructor(private readonly maxEntries = 100) {}

  /** Resolves on a later turn of the event loop, as a network cache would. */
  async get(key: string): Promise<Remembered<V> | undefined> {
    await nextTurn();
    return this.entries.get(key);
  }

  async set(key: string, value: V): Promise<void> {
    await nextTurn();
    this.entries.delete(key);
    this.entries.set(key, { value, at: Date.now() });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }
}
