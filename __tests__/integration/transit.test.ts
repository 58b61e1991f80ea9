import { channel } from 'node:diagnostics_channel';
import { getEventListeners } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { sleep, waitFor } from './helpers/async';
import { delayProxy } from './helpers/delay-proxy';
import { report, route, useHarness } from './helpers/harness';

const H = 'x-request-budget-ms';
const WORK = 'x-fanout-work-ms';
/** Each way, through the delaying proxy: a transit of about 2 × HOP per call. */
const HOP = 20;

/** A plain `http` server (no express-fanout: it reports no work time unless `handle` writes one). */
async function plainServer(handle: http.RequestListener): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * The signals `AbortSignal.any` made from `signal`, which Node keeps in an internal set on it (read by its
 * symbol's name, for this test only): 0 when the property is not there.
 */
function dependants(signal: AbortSignal): number {
  const key = Object.getOwnPropertySymbols(signal).find((s) => s.description === 'kDependantSignals');
  const set =
    key === undefined ? undefined : (signal as unknown as Record<symbol, Set<unknown> | undefined>)[key];
  return set?.size ?? 0;
}

describe('the learned transit per callee origin', () => {
  const { serve, onCleanup } = useHarness(express);

  /** `target` behind a proxy delaying each way by `ms`: its URL (a new origin). */
  async function delayed(target: string, ms = HOP): Promise<string> {
    const proxy = await delayProxy(Number(new URL(target).port), ms);
    onCleanup(() => proxy.close());
    return `http://127.0.0.1:${proxy.port}`;
  }

  /** An express-fanout callee: `/echo` answers the budget it received after working `?ms=`. */
  async function callee(options: Parameters<typeof serve>[0] = { budgetMs: 5000, serverTiming: false }) {
    return serve(options, (app) =>
      app.get(
        '/echo',
        route(async (req, res) => {
          await req.fanout.run(() => sleep(Number(req.query.ms ?? 0)), 'work');
          res.json({ budget: Number(req.headers[H]) });
        }),
      ),
    );
  }

  /** A caller whose `/` calls `url` once through `ctx.fetch()` and says what budget it sent. */
  async function caller(url: string, options: Parameters<typeof serve>[0] = { budgetMs: 1000 }) {
    return serve(options, (app) =>
      app.get(
        '/',
        report(async (req) =>
          req.fanout.run(async (ctx) => {
            const left = ctx.remainingMs();
            const response = await ctx.fetch(`${url}/echo?ms=${String(req.query.ms ?? 0)}`);
            return { left, ...((await response.json()) as { budget: number }) };
          }),
        ),
      ),
    );
  }

  it('a callee reports its work time in x-fanout-work-ms (an integer of ms) to a caller that sends a budget, Server-Timing off', async () => {
    const { http: client } = await callee();
    const answered = await client.get('/echo?ms=40').set(H, '900').expect(200);
    expect(answered.headers[WORK]).toMatch(/^\d+$/);
    expect(Number(answered.headers[WORK])).toBeGreaterThanOrEqual(39);
    expect(Number(answered.headers[WORK])).toBeLessThan(1000);
    expect(answered.headers['server-timing']).toBeUndefined();
    // A client that propagates no deadline (a browser) gets nothing of it.
    expect((await client.get('/echo').expect(200)).headers[WORK]).toBeUndefined();
  });

  it('reports no work time where the budget header is off (budgetHeader: false)', async () => {
    const { http: client } = await callee({ budgetHeader: false });
    expect((await client.get('/echo').set(H, '900').expect(200)).headers[WORK]).toBeUndefined();
  });

  it('ctx.fetch learns the transit to a callee that reports its work, and takes it off the budget it sends there', async () => {
    const down = await callee();
    const url = await delayed(down.url);
    const { http: client, fo } = await caller(url);
    // A slow answer (its work taken out) teaches the same transit as a fast one.
    await client.get('/?ms=120').expect(200);
    await client.get('/').expect(200);
    const learned = fo.stats().transit[url]!;
    expect(learned.samples).toBeGreaterThanOrEqual(1);
    // Two proxy delays, plus loopback and parsing: generous window for a loaded machine.
    expect(learned.marginMs).toBeGreaterThanOrEqual(2 * HOP);
    expect(learned.marginMs).toBeLessThan(2 * HOP + 150);
    const { value } = (await client.get('/').expect(200)).body as { value: { left: number; budget: number } };
    const margin = fo.stats().transit[url]!.marginMs;
    // Sent: what was left minus the fixed part (5 ms + 5 %) minus the learned transit (read a little later).
    expect(value.budget).toBeLessThanOrEqual(Math.ceil(value.left - 5 - value.left * 0.05 - 2 * HOP));
    expect(value.budget).toBeGreaterThan(value.left - 5 - value.left * 0.05 - margin - 60);
    expect(Object.keys(fo.stats().transit)).toEqual([url]);
  });

  it('a callee that reports nothing teaches nothing: the fixed margin only', async () => {
    const plain = await plainServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ budget: Number(req.headers[H]) }));
    });
    onCleanup(() => plain.close());
    const url = await delayed(plain.url);
    const { http: client, fo } = await caller(url);
    await client.get('/').expect(200);
    const { value } = (await client.get('/').expect(200)).body as { value: { left: number; budget: number } };
    expect(fo.stats().transit).toEqual({});
    expect(value.budget).toBeGreaterThan(value.left - 5 - value.left * 0.05 - 20);
  });

  it("reads the Server-Timing total where the callee's own header is not there", async () => {
    const plain = await plainServer((_req, res) => {
      // Works 150 ms and says so the standard way, as express-fanout does with serverTiming on.
      setTimeout(() => {
        res.setHeader('server-timing', 'db;dur=140, total;dur=150.2');
        res.end('{}');
      }, 150);
    });
    onCleanup(() => plain.close());
    const url = await delayed(plain.url);
    const { http: client, fo } = await caller(url);
    await client.get('/').expect(200);
    await client.get('/').expect(200);
    const learned = fo.stats().transit[url]!;
    expect(learned.marginMs).toBeGreaterThanOrEqual(2 * HOP);
    // The 150 ms of work are not transit.
    expect(learned.marginMs).toBeLessThan(2 * HOP + 100);
  });

  it("a new connection's set-up time is the first estimate while the first call to a callee is in flight", async () => {
    const down = await callee();
    const { http: client, fo } = await caller(down.url);
    const first = client.get('/?ms=300').then((r) => r);
    // The connection is made long before the answer (300 ms of work): undici's diagnostics channels told us.
    await waitFor(() => fo.stats().transit[down.url] !== undefined, 'the connection estimate');
    const estimate = fo.stats().transit[down.url]!;
    expect(estimate.samples).toBe(0);
    expect(estimate.marginMs).toBeGreaterThanOrEqual(0);
    expect(estimate.marginMs).toBeLessThan(200);
    expect((await first).status).toBe(200);
    expect(fo.stats().transit[down.url]!.samples).toBe(1);
    // Watched only while nothing was known: no subscription stays.
    for (const name of [
      'undici:client:beforeConnect',
      'undici:client:connected',
      'undici:client:connectError',
    ]) {
      expect(channel(name).hasSubscribers).toBe(false);
    }
  });

  it('a clock skew between caller and callee changes nothing: only durations cross the hop', async () => {
    const down = await callee();
    const url = await delayed(down.url);
    const { http: client, fo } = await caller(url);
    await client.get('/').expect(200);
    await client.get('/').expect(200);
    const before = fo.stats().transit[url]!.marginMs;
    const realNow = Date.now;
    // Every `Date.now()` of both apps (one process here) an hour ahead, then an hour behind.
    for (const skew of [3_600_000, -3_600_000]) {
      Date.now = () => realNow() + skew;
      try {
        const { value } = (await client.get('/').expect(200)).body as {
          value: { left: number; budget: number };
        };
        expect(value.budget).toBeGreaterThan(0);
        expect(value.budget).toBeLessThan(value.left);
      } finally {
        Date.now = realNow;
      }
    }
    const after = fo.stats().transit[url]!.marginMs;
    expect(Math.abs(after - before)).toBeLessThan(60);
  });

  it('ctx.headers(url) and req.fanout.headers(url) add the transit learned for that origin; without url, the fixed part only', async () => {
    const down = await callee();
    const url = await delayed(down.url);
    const { http: client, fo } = await serve({ budgetMs: 1000 }, (app) => {
      app.get(
        '/learn',
        report(async (req) => req.fanout.run(async ({ fetch }) => (await fetch(`${url}/echo`)).json())),
      );
      app.get(
        '/headers',
        report(async (req) => {
          const task = await req.fanout.run(({ headers }) => ({
            fixed: Number(headers()[H]),
            learned: Number(headers(`${url}/any/path?q=1`)[H]),
          }));
          return {
            ...task,
            request: Number(req.fanout.headers()[H]),
            requestLearned: Number(req.fanout.headers(new URL(url))[H]),
          };
        }),
      );
      app.get(
        '/bad',
        report(async (req) => req.fanout.headers('not a url')),
      );
      app.get(
        '/bad-in-task',
        report(async (req) => req.fanout.run(({ headers }) => headers('/relative'))),
      );
    });
    await client.get('/learn').expect(200);
    await client.get('/learn').expect(200);
    const margin = fo.stats().transit[url]!.marginMs;
    const { value } = (await client.get('/headers').expect(200)).body as {
      value: { fixed: number; learned: number; request: number; requestLearned: number };
    };
    expect(value.fixed - value.learned).toBeGreaterThanOrEqual(margin - 2);
    expect(value.fixed - value.learned).toBeLessThanOrEqual(margin + 10);
    expect(value.request - value.requestLearned).toBeGreaterThanOrEqual(margin - 2);
    expect(value.request - value.requestLearned).toBeLessThanOrEqual(margin + 10);
    const bad = (await client.get('/bad').expect(200)).body as {
      ok: boolean;
      error: { message: string; isTypeError: boolean };
    };
    expect(bad.ok).toBe(false);
    expect(bad.error.isTypeError).toBe(true);
    expect(bad.error.message).toBe(
      'Expected the url of `headers(url)` to be an absolute http(s) URL or origin, got `not a url` (string)',
    );
    const inTask = (await client.get('/bad-in-task').expect(200)).body as {
      error: { message: string; cause?: { name?: string; message?: string } };
    };
    expect(inTask.error.cause?.name).toBe('TypeError');
    expect(inTask.error.cause?.message).toMatch(/headers\(url\).*`\/relative`/);
  });
});

describe("ctx.fetch and the caller's own signal", () => {
  const { serve, onCleanup } = useHarness(express);

  /** A plain server whose `/slow-body` sends its headers at once, then half the body, the rest after `?ms=`. */
  async function slowBody() {
    const closedEarly: string[] = [];
    const server = await plainServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first,');
      const timer = setTimeout(() => res.end('second'), Number(url.searchParams.get('ms') ?? 0));
      res.on('close', () => {
        clearTimeout(timer);
        if (!res.writableEnded) closedEarly.push(url.searchParams.get('id') ?? '');
      });
    });
    onCleanup(() => server.close());
    return { url: server.url, closedEarly };
  }

  it('leaves no listener on the caller’s own signal after many calls (AbortSignal.any leaks on Node 20)', async () => {
    const down = await slowBody();
    const shutdown = new AbortController();
    const { http: client } = await serve({ budgetMs: 2000 }, (app) =>
      app.get(
        '/',
        report(async (req) =>
          req.fanout.run(async ({ fetch }) =>
            (await fetch(`${down.url}/?ms=0`, { signal: shutdown.signal })).text(),
          ),
        ),
      ),
    );
    for (let i = 0; i < 20; i++) {
      await Promise.all(
        Array.from({ length: 10 }, async () =>
          expect((await client.get('/').expect(200)).body).toEqual({ ok: true, value: 'first,second' }),
        ),
      );
    }
    expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0);
    // What `AbortSignal.any` leaves behind on Node 20: every combined signal, registered on its sources.
    expect(dependants(shutdown.signal)).toBe(0);
  });

  it('the body stays readable after the response until the attempt ends, and is aborted with the attempt', async () => {
    const down = await slowBody();
    const own = new AbortController();
    const { http: client } = await serve({ budgetMs: 2000 }, (app) => {
      app.get(
        '/read',
        report(async (req) =>
          req.fanout.run(async ({ fetch }) => {
            const response = await fetch(`${down.url}/?ms=100&id=read`, { signal: own.signal });
            await sleep(20);
            return response.text();
          }),
        ),
      );
      app.get(
        '/timeout',
        report(async (req) =>
          req.fanout.settle({
            body: {
              run: async ({ fetch }) =>
                (await fetch(`${down.url}/?ms=1000&id=timeout`, { signal: own.signal })).text(),
              timeoutMs: 150,
            },
          }),
        ),
      );
    });
    expect((await client.get('/read').expect(200)).body).toEqual({ ok: true, value: 'first,second' });
    const { value } = (await client.get('/timeout').expect(200)).body as {
      value: { body: { status: string } };
    };
    expect(value.body.status).toBe('timeout');
    // The attempt's abort reached the body being read: the callee saw its client go.
    await waitFor(() => down.closedEarly.includes('timeout'), 'the body read to be aborted');
    expect(down.closedEarly).not.toContain('read');
    expect(getEventListeners(own.signal, 'abort')).toHaveLength(0);
  });

  it("the caller's own signal aborts the call and its body while the attempt runs", async () => {
    const down = await slowBody();
    const own = new AbortController();
    const { http: client } = await serve({ budgetMs: 2000 }, (app) =>
      app.get(
        '/',
        report(async (req) =>
          req.fanout.settle({
            body: async ({ fetch }) => {
              const response = await fetch(`${down.url}/?ms=1000&id=own`, { signal: own.signal });
              setTimeout(() => own.abort(new Error('shutting down')), 20);
              return response.text();
            },
          }),
        ),
      ),
    );
    const { value } = (await client.get('/').expect(200)).body as {
      value: { body: { status: string; ms: number } };
    };
    expect(value.body.status).toBe('rejected');
    expect(value.body.ms).toBeLessThan(900);
    await waitFor(() => down.closedEarly.includes('own'), 'the body read to be aborted');
    expect(getEventListeners(own.signal, 'abort')).toHaveLength(0);
  });

  it('a signal already aborted fails the call at once', async () => {
    const down = await slowBody();
    const { http: client } = await serve({ budgetMs: 2000 }, (app) =>
      app.get(
        '/',
        report(async (req) =>
          req.fanout.settle({
            call: async ({ fetch }) => (await fetch(`${down.url}/`, { signal: AbortSignal.abort() })).text(),
          }),
        ),
      ),
    );
    const { value } = (await client.get('/').expect(200)).body as { value: { call: { status: string } } };
    expect(value.call.status).toBe('rejected');
  });
});
