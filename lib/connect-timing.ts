import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';

/**
 * How long the HTTP client behind the global `fetch` (undici, bundled with Node) takes to set up a new
 * connection, read from the diagnostics channels it publishes: the learned transit's first estimate before any
 * answer (transit.ts). Watched only while a call to an origin nothing is known of is in flight, and every
 * subscription is removed when that call has its answer. If a Node release stops publishing these channels,
 * nothing breaks: there is no first estimate (the fixed margin until the first answer), and
 * __tests__/integration/transit.test.ts fails to say so.
 */

/** undici's channels: a connection about to be made, made, failed. */
const BEFORE = 'undici:client:beforeConnect';
const CONNECTED = 'undici:client:connected';
const FAILED = 'undici:client:connectError';

/**
 * Calls `onConnected(ms)` for each new connection to `origin` made until the returned stop is called (in
 * order: concurrent set-ups to one origin are paired first in, first out).
 */
export function watchConnections(origin: string, onConnected: (ms: number) => void): () => void {
  const started: number[] = [];
  const before = (message: unknown): void => {
    if (originOf(message) === origin) started.push(performance.now());
  };
  const connected = (message: unknown): void => {
    if (originOf(message) !== origin) return;
    const at = started.shift();
    if (at !== undefined) onConnected(performance.now() - at);
  };
  const failed = (message: unknown): void => {
    if (originOf(message) === origin) started.shift();
  };
  subscribe(BEFORE, before);
  subscribe(CONNECTED, connected);
  subscribe(FAILED, failed);
  return () => {
    unsubscribe(BEFORE, before);
    unsubscribe(CONNECTED, connected);
    unsubscribe(FAILED, failed);
  };
}

/** `http://host:port` of a channel message's `connectParams` (`{ protocol: 'http:', host: 'host:port' }`). */
function originOf(message: unknown): string | undefined {
  const params = (message as { connectParams?: { protocol?: unknown; host?: unknown } } | null)
    ?.connectParams;
  if (typeof params?.protocol !== 'string' || typeof params.host !== 'string') return undefined;
  return `${params.protocol}//${params.host}`;
}
