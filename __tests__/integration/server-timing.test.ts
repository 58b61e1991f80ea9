import { join } from 'node:path';
import { fanout, gather } from 'express-fanout';
import { deferred, delay, never, waitFor } from './helpers/async';
import { expressVersions } from './helpers/express-versions';
import { parseServerTiming, report, useHarness } from './helpers/harness';

const ENTRY = /^[A-Za-z0-9_.-]+;dur=\d+(\.\d+)?(;desc="[a-z0-9 .;]+")?$/;

describe.each(expressVersions)('Server-Timing (%s)', (_version, express) => {
  const { serve, onCleanup } = useHarness(express);

  /** The app's instance runs `outer` before the router; the router's own instance runs `inner`. */
  const twoInstances = (outerTiming: boolean, innerTiming: boolean) =>
    serve({ serverTiming: outerTiming }, (app) => {
      app.use((req, _res, next) => void req.fanout.run(() => 1, 'outer').then(() => next(), next));
      const router = express.Router();
      const inner = fanout({ serverTiming: innerTiming });
      onCleanup(() => inner.close());
      router.use(inner);
      router.get(
        '/',
        report(async (req) => req.fanout.all({ inner: () => 2 })),
      );
      app.use('/r', router);
    });

  it('writes one total when two different fanout() instances handle one request', async () => {
    const { http } = await twoInstances(true, true);
    const res = await http.get('/r').expect(200);
    const names = parseServerTiming(res.headers['server-timing']).map((e) => e.name);
    expect(names.filter((n) => n === 'total')).toHaveLength(1);
    expect(names.at(-1)).toBe('total');
    expect(names.sort()).toEqual(['inner', 'outer', 'total']);
  });

  it.each([
    [false, true, ['inner', 'total']],
    [true, false, ['outer', 'total']],
  ])(
    'writes one total when only one of two instances times (outer %p, inner %p)',
    async (outerTiming, innerTiming, expected) => {
      const { http } = await twoInstances(outerTiming, innerTiming);
      const res = await http.get('/r').expect(200);
      expect(parseServerTiming(res.headers['server-timing']).map((e) => e.name)).toEqual(expected);
    },
  );

  it('has one entry per task with its duration, plus a total', async () => {
    const { http } = await serve({ serverTiming: true }, (app) =>
      app.get(
        '/',
        gather({
          file: ({ signal }) => delay(50, 'f', signal),
          db: ({ signal }) => delay(200, 'd', signal),
        }),
      ),
    );
    const res = await http.get('/').expect(200);
    const entries = parseServerTiming(res.headers['server-timing']);
    for (const e of entries) expect(e.raw).toMatch(ENTRY);
    expect(entries.map((e) => e.name).sort()).toEqual(['db', 'file', 'total']);
    const byName = Object.fromEntries(entries.map((e) => [e.name, e]));
    expect(byName.db!.dur).toBeGreaterThanOrEqual(190);
    expect(byName.db!.dur).toBeLessThan(450);
    expect(byName.file!.dur).toBeGreaterThanOrEqual(45);
    expect(byName.total!.dur).toBeGreaterThanOrEqual(byName.db!.dur!);
    expect(byName.db!.desc).toBeUndefined();
    expect(byName.total!.desc).toBeUndefined();
  });

  it('keeps the header small for a request of hundreds of tasks: 63 entries, then one counting the rest', async () => {
    const { http } = await serve({ serverTiming: true, perRequest: 16 }, (app) =>
      app.get(
        '/',
        gather(() => Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`t${i}`, () => i]))),
      ),
    );
    const res = await http.get('/').expect(200);
    const header = String(res.headers['server-timing']);
    const entries = parseServerTiming(header);
    expect(entries).toHaveLength(65);
    expect(entries.slice(0, 63).map((e) => e.name)).toEqual(Array.from({ length: 63 }, (_, i) => `t${i}`));
    expect(entries[63]!.raw).toBe('more;desc="237 more tasks"');
    expect(entries[64]!.name).toBe('total');
    expect(header.length).toBeLessThan(4096);
  });

  it('is on by default outside production', async () => {
    const { http } = await serve({}, (app) => app.get('/', gather({ a: () => 1 })));
    const res = await http.get('/').expect(200);
    expect(parseServerTiming(res.headers['server-timing']).map((e) => e.name)).toEqual(
      expect.arrayContaining(['a', 'total']),
    );
  });

  it('is off with serverTiming: false', async () => {
    const { http } = await serve({ serverTiming: false }, (app) => app.get('/', gather({ a: () => 1 })));
    const res = await http.get('/').expect(200);
    expect(res.headers['server-timing']).toBeUndefined();
  });

  describe('with NODE_ENV=production', () => {
    const previous = process.env.NODE_ENV;
    beforeEach(() => {
      process.env.NODE_ENV = 'production';
    });
    afterEach(() => {
      process.env.NODE_ENV = previous;
    });

    it('is off by default', async () => {
      const { http } = await serve({}, (app) => app.get('/', gather({ a: () => 1 })));
      const res = await http.get('/').expect(200);
      expect(res.headers['server-timing']).toBeUndefined();
    });

    it('is on when serverTiming: true asks for it', async () => {
      const { http } = await serve({ serverTiming: true }, (app) => app.get('/', gather({ a: () => 1 })));
      const res = await http.get('/').expect(200);
      expect(parseServerTiming(res.headers['server-timing']).map((e) => e.name)).toContain('a');
    });
  });

  it('marks a task timed out with desc="timeout", also on the 504 answer', async () => {
    const { http } = await serve({ serverTiming: true, budgetMs: 150, graceMs: 50 }, (app) =>
      app.get('/', gather({ quick: () => 1, hung: never })),
    );
    const res = await http.get('/').expect(504);
    const entries = parseServerTiming(res.headers['server-timing']);
    expect(entries.find((e) => e.name === 'hung')?.desc).toBe('timeout');
    expect(entries.find((e) => e.name === 'quick')?.desc).toBeUndefined();
    expect(entries.map((e) => e.name)).toContain('total');
  });

  it('marks a task whose value came from its fallback with desc="fallback"', async () => {
    const { http } = await serve({ serverTiming: true }, (app) =>
      app.get(
        '/',
        gather({
          api: { run: () => Promise.reject(new Error('x')), fallback: null },
          slow: { run: ({ signal }) => delay(2000, 1, signal), timeoutMs: 50, fallback: 0 },
          ok: { run: () => 1, fallback: 0 },
        }),
      ),
    );
    const res = await http.get('/').expect(200);
    const entries = parseServerTiming(res.headers['server-timing']);
    expect(entries.find((e) => e.name === 'api')?.desc).toBe('fallback');
    expect(entries.find((e) => e.name === 'slow')?.desc).toBe('fallback');
    expect(entries.find((e) => e.name === 'ok')?.desc).toBeUndefined();
  });

  it('marks a required task that failed with desc="failed" and its aborted siblings with desc="aborted"', async () => {
    const { http } = await serve({ serverTiming: true }, (app) =>
      app.get(
        '/',
        gather({
          db: () => delay(30, 0).then(() => Promise.reject(new Error('x'))),
          sibling: ({ signal }) => delay(3000, 1, signal),
        }),
      ),
    );
    const res = await http.get('/').expect(502);
    const entries = parseServerTiming(res.headers['server-timing']);
    expect(entries.find((e) => e.name === 'db')?.desc).toBe('failed');
    expect(entries.find((e) => e.name === 'sibling')?.desc).toBe('aborted');
  });

  it('marks a shed task with desc="shed"', async () => {
    const gate = deferred<number>();
    const { http, fo } = await serve({ serverTiming: true, concurrency: 1, maxQueue: 0 }, (app) => {
      app.get('/hold', gather({ h: () => gate.promise }));
      app.get(
        '/',
        report(async (req) => req.fanout.settle({ x: () => 1 })),
      );
    });
    const hold = http.get('/hold').then((r) => r);
    await waitFor(() => fo.stats().running === 1, 'the slot to be taken');
    const res = await http.get('/').expect(200);
    expect(res.body.value.x.status).toBe('shed');
    expect(parseServerTiming(res.headers['server-timing']).find((e) => e.name === 'x')?.desc).toBe('shed');
    gate.resolve(1);
    await hold;
  });

  it('lists the tasks of every call of the request', async () => {
    const { http } = await serve({ serverTiming: true }, (app) =>
      app.get(
        '/',
        report(async (req) => {
          await req.fanout.all({ a: () => 1 });
          await req.fanout.run(() => 2, 'b');
          await req.fanout.settle({ c: () => 3 });
          return 'ok';
        }),
      ),
    );
    const res = await http.get('/').expect(200);
    expect(
      parseServerTiming(res.headers['server-timing'])
        .map((e) => e.name)
        .sort(),
    ).toEqual(['a', 'b', 'c', 'total']);
  });

  it('keeps a Server-Timing header the application set itself', async () => {
    const { http } = await serve({ serverTiming: true }, (app) =>
      app.get(
        '/',
        report(async (req, res) => {
          res.setHeader('Server-Timing', 'app;dur=1.5');
          return req.fanout.all({ a: () => 1 });
        }),
      ),
    );
    const res = await http.get('/').expect(200);
    expect(parseServerTiming(res.headers['server-timing']).map((e) => e.name)).toEqual(
      expect.arrayContaining(['app', 'a', 'total']),
    );
  });

  it('tells the wait for a slot from the work: desc="queued 100 ms" for a task that waited its turn', async () => {
    const { http } = await serve({ serverTiming: true, concurrency: 1, admission: false }, (app) =>
      app.get(
        '/',
        gather({
          first: ({ signal }) => delay(100, 1, signal),
          second: ({ signal }) => delay(50, 2, signal),
        }),
      ),
    );
    const res = await http.get('/').expect(200);
    const entries = parseServerTiming(res.headers['server-timing']);
    const first = entries.find((e) => e.name === 'first')!;
    const second = entries.find((e) => e.name === 'second')!;
    expect(first.desc).toBeUndefined();
    const queued = Number(/^queued ([\d.]+) ms$/.exec(second.desc ?? '')?.[1]);
    expect(queued).toBeGreaterThanOrEqual(90);
    expect(queued).toBeLessThan(400);
    // Its duration counts the wait and its own 50 ms.
    expect(second.dur).toBeGreaterThanOrEqual(queued + 45);
  });

  it('gives the outcome first, then the queue wait: desc="fallback; queued … ms"', async () => {
    const { http } = await serve({ serverTiming: true, concurrency: 1, admission: false }, (app) =>
      app.get(
        '/',
        gather({
          hold: ({ signal }) => delay(60, 1, signal),
          api: { run: () => Promise.reject(new Error('down')), fallback: null },
        }),
      ),
    );
    const res = await http.get('/').expect(200);
    const api = parseServerTiming(res.headers['server-timing']).find((e) => e.name === 'api');
    expect(api?.desc).toMatch(/^fallback; queued [\d.]+ ms$/);
  });

  it('says when a task was submitted after the request’s first task: desc="at … ms" for a dependent', async () => {
    const { http } = await serve({ serverTiming: true }, (app) =>
      app.get(
        '/',
        gather({
          a: ({ signal }) => delay(40, 1, signal),
          b: { run: () => 2, after: ['a'] },
        }),
      ),
    );
    const res = await http.get('/').expect(200);
    const b = parseServerTiming(res.headers['server-timing']).find((e) => e.name === 'b');
    const at = Number(/^at ([\d.]+) ms$/.exec(b?.desc ?? '')?.[1]);
    expect(at).toBeGreaterThanOrEqual(35);
    expect(at).toBeLessThan(400);
  });

  it('shows only the tasks serverTiming.include accepts, and a total; a throwing include hides the task', async () => {
    const { http } = await serve(
      {
        serverTiming: {
          include: (name) => {
            if (name === 'odd') throw new Error('no');
            return name !== 'secret';
          },
        },
      },
      (app) => app.get('/', gather({ a: () => 1, secret: () => 2, odd: () => 3, b: () => 4 })),
    );
    const res = await http.get('/').expect(200);
    expect(parseServerTiming(res.headers['server-timing']).map((e) => e.name)).toEqual(['a', 'b', 'total']);
  });

  it('counts in `more` only the included tasks that did not fit', async () => {
    const { http } = await serve(
      { serverTiming: { include: (name) => name.startsWith('in') }, perRequest: 16 },
      (app) =>
        app.get(
          '/',
          gather(() =>
            Object.fromEntries(
              Array.from({ length: 200 }, (_, i) => [i % 2 === 0 ? `in${i}` : `out${i}`, () => i]),
            ),
          ),
        ),
    );
    const res = await http.get('/').expect(200);
    const entries = parseServerTiming(res.headers['server-timing']);
    expect(entries).toHaveLength(65);
    expect(entries.every((e) => !e.name.startsWith('out'))).toBe(true);
    expect(entries[63]!.raw).toBe('more;desc="37 more tasks"');
  });

  it('shows exactly 64 tasks without a `more` entry', async () => {
    const { http } = await serve({ serverTiming: true, perRequest: 16 }, (app) =>
      app.get(
        '/',
        gather(() => Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`t${i}`, () => i]))),
      ),
    );
    const res = await http.get('/').expect(200);
    const names = parseServerTiming(res.headers['server-timing']).map((e) => e.name);
    expect(names).toHaveLength(65);
    expect(names).not.toContain('more');
  });

  it('refuses a serverTiming that is neither a boolean nor { include }', async () => {
    expect(() => fanout({ serverTiming: 'yes' as unknown as boolean })).toThrow(
      'Expected `serverTiming` to be a boolean or `{ include? }`, got `yes` (string)',
    );
    expect(() => fanout({ serverTiming: { include: 1 as unknown as () => boolean } })).toThrow(
      'Expected `serverTiming.include` to be a function, got `1` (number)',
    );
    expect(() => fanout({ serverTiming: { inclde: () => true } as never })).toThrow(
      'Unknown option `serverTiming.inclde`. Did you mean `serverTiming.include`?',
    );
  });

  it('keeps the whole header within 4,096 bytes when the app’s own entries are multi-byte', async () => {
    const { http } = await serve({ serverTiming: true }, (app) =>
      app.get(
        '/',
        report(async (req, res) => {
          res.setHeader('Server-Timing', `app;desc="${'é'.repeat(1500)}"`);
          return req.fanout.all(
            Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`task${i}`, () => i])),
          );
        }),
      ),
    );
    const res = await http.get('/').expect(200);
    const header = res.headers['server-timing'] as string;
    expect(Buffer.byteLength(header, 'latin1')).toBeLessThanOrEqual(4096);
  });

  it('counts the wait for a worker thread as queue time, for a worker() task and for a task calling ctx.worker()', async () => {
    const script = join(__dirname, '..', 'fixtures', 'worker-methods.js');
    const { http } = await serve(
      { serverTiming: true, budgetMs: 5000, workers: { script, minWorkers: 1, maxWorkers: 1 } },
      (app) =>
        app.get(
          '/',
          report(async (req) => {
            const hold = req.fanout.worker('sleep', [150]);
            const viaTask = req.fanout.all({ io: ({ worker }) => worker('sleep', [10]) });
            return Promise.all([hold, viaTask, req.fanout.worker('sleep', [10])]);
          }),
        ),
    );
    // The first request starts the thread; the second measures the waits behind a busy one.
    await http.get('/').expect(200);
    const res = await http.get('/').expect(200);
    const entries = parseServerTiming(res.headers['server-timing']);
    const waits = entries
      .filter((e) => e.name === 'io' || e.name === 'sleep')
      .map((e) => Number(/queued ([\d.]+) ms/.exec(e.desc ?? '')?.[1] ?? 0));
    // One sleep held the thread for 150 ms: the two others waited most of that (and the second its turn too).
    expect(waits.filter((ms) => ms >= 100)).toHaveLength(2);
  });
});
