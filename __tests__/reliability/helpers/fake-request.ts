import { EventEmitter } from 'node:events';
import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import type { Fanout, FanoutMiddleware } from 'express-fanout';

export interface FakeExchange {
  req: Request;
  /** An EventEmitter with the fields the middleware reads; `writeHead()` runs the `on-headers` hooks. */
  res: Response & EventEmitter;
  scope: Fanout;
  /** The headers set on the response, by lower-cased name. */
  headers: Map<string, unknown>;
  /** Ends the response as Express would, so the request's scope ends ('finished'). */
  finish(status?: number): void;
  /** The client goes away before the response. */
  disconnect(): void;
}

/**
 * One request through `fo` without HTTP: a request and a response that are EventEmitters with the fields
 * the middleware reads. `setHeader` validates names and values as Node's HTTP server does, so a header that
 * would crash a real response fails here too.
 */
export function fakeExchange(
  fo: FanoutMiddleware,
  requestHeaders: Record<string, string | string[]> = {},
): FakeExchange {
  const socket = Object.assign(new EventEmitter(), { destroyed: false });
  const req = Object.assign(new EventEmitter(), {
    method: 'GET',
    url: '/',
    headers: requestHeaders,
    socket,
    connection: socket,
  }) as unknown as Request;
  const headers = new Map<string, unknown>();
  const state = { writableEnded: false, destroyed: false, headersSent: false };
  const res = Object.assign(new EventEmitter(), {
    socket,
    get writableEnded() {
      return state.writableEnded;
    },
    get destroyed() {
      return state.destroyed;
    },
    get headersSent() {
      return state.headersSent;
    },
    statusCode: 200,
    getHeader: (name: string) => headers.get(name.toLowerCase()),
    setHeader(name: string, value: string | number | readonly string[]) {
      if (state.headersSent)
        throw Object.assign(new Error('Cannot set headers after they are sent'), {
          code: 'ERR_HTTP_HEADERS_SENT',
        });
      validateHeaderName(name);
      for (const v of [value].flat()) validateHeaderValue(name, String(v));
      headers.set(name.toLowerCase(), value);
      return res;
    },
    writeHead(this: { statusCode: number }, status: number) {
      if (state.headersSent)
        throw Object.assign(new Error('Cannot write headers after they are sent'), {
          code: 'ERR_HTTP_HEADERS_SENT',
        });
      this.statusCode = status;
      state.headersSent = true;
      return res;
    },
  }) as unknown as Response & EventEmitter;
  let nextError: unknown = null;
  let nextCalls = 0;
  fo(req, res, ((error?: unknown) => {
    nextCalls++;
    nextError = error ?? null;
  }) as NextFunction);
  if (nextCalls !== 1 || nextError !== null) {
    throw new Error(`the middleware called next ${nextCalls} times, with ${String(nextError)}`);
  }
  return {
    req,
    res,
    scope: req.fanout,
    headers,
    finish(status = 200) {
      if (!state.headersSent) (res as unknown as { writeHead(s: number): void }).writeHead(status);
      state.writableEnded = true;
      res.emit('finish');
      res.emit('close');
    },
    disconnect() {
      state.destroyed = true;
      socket.destroyed = true;
      socket.emit('close');
      res.emit('close');
    },
  };
}
