// Named types only: a default import of a node module in shipped declarations fails consumers without
// `esModuleInterop` (TS1192: Module '"node:http"' has no default export).
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/** How long a drained server keeps its idle connections and its listener after the last answer, ms. */
const LINGER_MS = 100;

/** What {@link drainable} returns. */
export interface Drainable {
  /** `drain()` was called. */
  readonly draining: boolean;
  /** Requests being answered now. */
  readonly inFlight: number;
  /**
   * Stops the server the way a rolling deploy needs: answers in flight go out; a request arriving meanwhile
   * (on a kept-alive connection or a new one) is answered `503` with `Connection: close` and `Retry-After: 1`
   * (the client retries on another instance) instead of being served on the client's timetable; 100 ms after
   * the last answer in flight, the server stops listening (`server.close()`) and closes the connections left
   * idle. Resolves once the server closed; connections still open after `timeoutMs` are destroyed, so it
   * resolves by then (give `budgetMs + graceMs`). Idempotent.
   */
  drain(options?: { timeoutMs?: number }): Promise<void>;
}

/**
 * Makes `server` drainable. Call it once, right after creating the server (it wraps the server's `request`
 * listeners, the Express app included, to know the answers in flight and to shed requests during the drain).
 *
 * ```ts
 * const server = app.listen(port);
 * const drain = drainable(server);
 * process.once('SIGTERM', async () => {
 *   await drain.drain({ timeoutMs: budgetMs + graceMs }); // answers in flight go out, new ones get 503
 *   await fo.close();
 *   process.exit(0);
 * });
 * ```
 */
export function drainable(server: Server): Drainable {
  const listeners = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>;
  server.removeAllListeners('request');
  const inFlight = new Set<ServerResponse>();
  let draining: Promise<void> | null = null;

  server.on('request', function drainableRequest(req: IncomingMessage, res: ServerResponse) {
    if (draining) {
      res.shouldKeepAlive = false;
      res.writeHead(503, { Connection: 'close', 'Retry-After': '1', 'Content-Type': 'text/plain' });
      res.end('Service Unavailable: shutting down\n');
      req.resume();
      return;
    }
    inFlight.add(res);
    res.once('close', () => {
      inFlight.delete(res);
      if (draining && inFlight.size === 0) closeSoon();
    });
    for (const listener of listeners) listener.call(server, req, res);
  });

  let closing: NodeJS.Timeout | null = null;
  /**
   * Once the answers in flight went out, and {@link LINGER_MS} later: stop listening and close the connections
   * left idle. Until then the server keeps accepting and sheds (503 + Connection: close), so that a client
   * sends its next request on its kept-alive connection and gets a 503 instead of finding the connection
   * closed under it (an idle connection closed while a request is on its way is a reset), and so that no
   * connection a cluster's primary accepted meanwhile is reset by the listener closing.
   */
  const closeSoon = (): void => {
    if (closing === null) closing = setTimeout(shut, LINGER_MS);
  };
  let shutDown = false;
  const shut = (): void => {
    if (shutDown) return;
    shutDown = true;
    server.close(() => onClosed());
    server.closeIdleConnections();
  };
  let onClosed: () => void = () => {};

  return {
    get draining() {
      return draining !== null;
    },
    get inFlight() {
      return inFlight.size;
    },
    drain(options) {
      if (draining) return draining;
      const timeoutMs = options?.timeoutMs;
      if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs >= 0)) {
        return Promise.reject(
          new TypeError(`Expected \`timeoutMs\` to be an integer >= 0, got \`${String(timeoutMs)}\``),
        );
      }
      draining = new Promise<void>((resolve) => {
        let force: NodeJS.Timeout | undefined;
        onClosed = () => {
          clearTimeout(force);
          if (closing !== null) clearTimeout(closing);
          resolve();
        };
        if (timeoutMs !== undefined) {
          force = setTimeout(() => {
            shut();
            server.closeAllConnections();
          }, timeoutMs);
          force.unref();
        }
        if (inFlight.size === 0) closeSoon();
      });
      return draining;
    },
  };
}
