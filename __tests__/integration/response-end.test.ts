import { channel } from 'node:diagnostics_channel';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { fanout } from 'express-fanout';
import { delay } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { openRequest, route, useHarness } from './helpers/harness';

// How a request's end is heard. Through Node's HTTP server, from its `http.server.response.finish` diagnostics
// channel and the socket's 'close': the middleware adds no listener to the response. Without a server (an
// adapter calling Express on objects of its own, as serverless-http does), from a 'close' listener on the
// response. Either way the door counts the request out once, and what the request still runs is ended.
describe.each(expressVersions)('the end of a request (%s)', (_version, express) => {
  const { serve } = useHarness(express);

  it('adds no listener to a response that Node’s server made, and still counts it out when it ends', async () => {
    const added: number[] = [];
    const { http, fo } = await serve(
      {},
      (app) =>
        app.get(
          '/',
          route(async (req, res) => {
            const before = (res as unknown as { closeBefore: number }).closeBefore;
            const value = await req.fanout.run(async () => 1, 'one');
            added.push(res.listenerCount('close') - before);
            res.json({ value });
          }),
        ),
      {
        before: (app) =>
          app.use((_req, res, next) => {
            (res as unknown as { closeBefore: number }).closeBefore = res.listenerCount('close');
            next();
          }),
      },
    );
    // The first request in the process also gets a listener, until the channel has ended one (see scope.ts).
    await http.get('/').expect(200, { value: 1 });
    added.length = 0;
    for (let i = 0; i < 5; i++) await http.get('/').expect(200, { value: 1 });
    // No 'close' listener of the package's on any of them.
    expect(added).toEqual([0, 0, 0, 0, 0]);
    await delay(20, undefined);
    expect(fo.stats().eventLoop.inFlight).toBe(0);
    expect(fo.stats().completed).toBe(6);
  });

  it('ends what a request still runs once its response is sent, through the channel', async () => {
    let signal: AbortSignal | undefined;
    const { http } = await serve({}, (app) =>
      app.get(
        '/',
        route(async (req, res) => {
          void req.fanout
            .settle({ late: (ctx) => ((signal = ctx.signal), delay(5000, 1, ctx.signal)) })
            .catch(() => undefined);
          await delay(5, undefined);
          res.json({ sent: true });
        }),
      ),
    );
    await http.get('/').expect(200, { sent: true });
    await delay(30, undefined);
    expect(signal?.aborted).toBe(true);
  });

  it('ends both instances’ scopes of one request, an outer and an inner one', async () => {
    const signals: AbortSignal[] = [];
    const outer = fanout({ budgetMs: 2000 });
    const { http, fo } = await serve(
      { budgetMs: 1000 },
      (app) =>
        app.get(
          '/',
          route(async (req, res) => {
            void req.fanout
              .settle({ late: (ctx) => (signals.push(ctx.signal), delay(5000, 1, ctx.signal)) })
              .catch(() => undefined);
            await delay(5, undefined);
            res.json({ ok: true });
          }),
        ),
      { before: (app) => app.use(outer) },
    );
    try {
      await http.get('/').expect(200);
      await delay(30, undefined);
      expect(signals).toHaveLength(1);
      expect(signals[0]!.aborted).toBe(true);
      expect(outer.stats().eventLoop.inFlight).toBe(0);
      expect(fo.stats().eventLoop.inFlight).toBe(0);
    } finally {
      await outer.close();
    }
  });

  it('hears a client that leaves before the answer, from its socket', async () => {
    let signal: AbortSignal | undefined;
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const { url, fo } = await serve({}, (app) =>
      app.get(
        '/',
        route(async (req, res) => {
          const result = req.fanout.all({
            slow: (ctx) => ((signal = ctx.signal), started(), delay(5000, 1, ctx.signal)),
          });
          res.json(await result.catch(() => ({})));
        }),
      ),
    );
    const request = openRequest(url, '/');
    await running;
    request.abort();
    await delay(50, undefined);
    expect(signal?.aborted).toBe(true);
    expect(fo.stats().eventLoop.inFlight).toBe(0);
    expect(fo.stats().aborted).toBe(1);
  });

  it('ignores a message on the channel that it cannot read, and still ends requests after it', async () => {
    const { http, fo } = await serve({}, (app) =>
      app.get(
        '/',
        route(async (req, res) => res.json(await req.fanout.all({ one: async () => 1 }))),
      ),
    );
    await http.get('/').expect(200, { one: 1 });
    const finished = channel('http.server.response.finish');
    for (const message of [null, 1, {}, { socket: 1 }, { request: {}, socket: {} }, { socket: null }]) {
      expect(() => finished.publish(message)).not.toThrow();
    }
    await http.get('/').expect(200, { one: 1 });
    await delay(20, undefined);
    expect(fo.stats().eventLoop.inFlight).toBe(0);
  });

  it('listens to the response’s close when no server made the request (an adapter calling Express)', async () => {
    const fo = fanout();
    const app = express();
    app.use(fo);
    let signal: AbortSignal | undefined;
    app.get('/', (req, res, next) => {
      void req.fanout
        .settle({ late: (ctx) => ((signal = ctx.signal), delay(5000, 1, ctx.signal)) })
        .catch(() => undefined);
      res.locals.listeners = res.listenerCount('close');
      next();
    });
    try {
      // Real request and response objects on a socket that no server accepted.
      const req = new IncomingMessage(new Socket());
      req.method = 'GET';
      req.url = '/';
      const res = new ServerResponse(req);
      await new Promise<void>((resolve, reject) =>
        (app as unknown as { handle(q: unknown, s: unknown, done: (e?: unknown) => void): void }).handle(
          req,
          res,
          (error?: unknown) => (error === undefined ? resolve() : reject(error)),
        ),
      );
      expect((res as unknown as { locals: { listeners: number } }).locals.listeners).toBe(1);
      expect(fo.stats().eventLoop.inFlight).toBe(1);
      // As the adapter's response ends.
      (res as { finished: boolean }).finished = true;
      res.emit('close');
      expect(signal?.aborted).toBe(true);
      expect(fo.stats().eventLoop.inFlight).toBe(0);
    } finally {
      await fo.close();
    }
  });
});
