import http from 'node:http';
import { delayProxy } from './helpers/delay-proxy';
import { get, startService, type Service } from './helpers/services';

/**
 * Three real services in separate processes, gateway -> middle -> leaf, with a TCP proxy adding 30 ms each way
 * between them. Two gateway/middle pairs share the leaf: one with `propagationMarginMs: 100` (more than a round
 * trip), one with the default (5 ms + 5 %), which is meant for a network of sub-ms hops.
 */
// CHAIN_HOP_MS=1 measures the default margin on a fast network (README, "Across services").
const HOP_MS = Number(process.env.CHAIN_HOP_MS ?? 30);
const BUDGET_MS = 500;
const RUNS = 5;

describe(`a chain of three services, ${HOP_MS} ms a hop`, () => {
  const services: Service[] = [];
  const proxies: Array<{ close(): Promise<void> }> = [];
  let leaf: Service;
  let tuned: Service;
  let untuned: Service;
  /** What the runs measured, printed at the end (README, "Across services"). */
  const measured: string[] = [];

  const proxied = async (target: Service): Promise<string> => {
    const proxy = await delayProxy(target.port, HOP_MS);
    proxies.push(proxy);
    return `http://127.0.0.1:${proxy.port}`;
  };

  beforeAll(async () => {
    const env = { BUDGET_MS: String(BUDGET_MS) };
    leaf = await startService('chain-service.ts', { ...env, ROLE: 'leaf' });
    services.push(leaf);
    const toLeaf = await proxied(leaf);
    const [middleA, middleB] = await Promise.all([
      startService('chain-service.ts', { ...env, ROLE: 'middle', NEXT_URL: toLeaf, MARGIN_MS: '100' }),
      startService('chain-service.ts', { ...env, ROLE: 'middle', NEXT_URL: toLeaf, MARGIN_MS: 'default' }),
    ]);
    services.push(middleA, middleB);
    const [toA, toB] = [await proxied(middleA), await proxied(middleB)];
    [tuned, untuned] = await Promise.all([
      startService('chain-service.ts', { ...env, ROLE: 'gateway', NEXT_URL: toA, MARGIN_MS: '100' }),
      startService('chain-service.ts', { ...env, ROLE: 'gateway', NEXT_URL: toB, MARGIN_MS: 'default' }),
    ]);
    services.push(tuned, untuned);
    // Warm up both chains (the first fetch of a process loads undici; connections open once).
    await Promise.all([get(`${tuned.url}/gateway?ms=1&id=warm`), get(`${untuned.url}/gateway?ms=1&id=warm`)]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop('SIGKILL')));
    await Promise.all(proxies.map((p) => p.close()));
    if (measured.length) process.stdout.write(`chain, ${HOP_MS} ms a hop:\n  ${measured.join('\n  ')}\n`);
  });

  interface GatewayAnswer {
    status: string;
    value: unknown;
    answered: boolean;
    downstreamStatus: number | null;
    ms: number;
    budgetMs: number;
  }

  it('a fast leaf answers through both hops', async () => {
    const res = await get(`${tuned.url}/gateway?ms=5&id=fast`);
    const body = JSON.parse(res.body) as GatewayAnswer;
    expect(body).toMatchObject({
      status: 'fulfilled',
      value: { role: 'middle', leaf: { role: 'leaf', ms: 5 } },
    });
    // Two hops there and back: at least 4 × 30 ms.
    expect(body.ms).toBeGreaterThanOrEqual(4 * HOP_MS);
    measured.push(`fast leaf: ${body.ms.toFixed(0)} ms at the gateway (4 transits of ${HOP_MS} ms)`);
  });

  it('with a margin over the round trip, the gateway receives the middle’s answer before its own deadline in every run', async () => {
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const res = await get(`${tuned.url}/gateway?ms=5000&id=slow${i}`);
      expect(res.status).toBe(200);
      const body = JSON.parse(res.body) as GatewayAnswer;
      // The leaf timed out first; its 504 came back as the middle's 504, a timeout here, in time for the fallback.
      expect(body).toMatchObject({
        answered: true,
        downstreamStatus: 504,
        status: 'timeout',
        value: 'fallback',
      });
      expect(body.ms).toBeLessThan(body.budgetMs);
      times.push(body.ms);
    }
    measured.push(
      `margin 100 ms, slow leaf: the middle's 504 reached the gateway at ${times.map((t) => t.toFixed(0)).join(', ')} ms of ${BUDGET_MS}`,
    );
  }, 30_000);

  it('with the default margin (5 ms + 5 %), hops of 30 ms outrun it: the gateway still answers by its deadline', async () => {
    const times: number[] = [];
    let answered = 0;
    for (let i = 0; i < RUNS; i++) {
      const res = await get(`${untuned.url}/gateway?ms=5000&id=untuned${i}`);
      expect(res.status).toBe(200);
      const body = JSON.parse(res.body) as GatewayAnswer;
      expect(body.value).toBe('fallback');
      expect(body.ms).toBeLessThan(BUDGET_MS + 50);
      if (body.answered) answered++;
      times.push(body.ms);
    }
    measured.push(
      `default margin, slow leaf: the gateway's task ended at ${times.map((t) => t.toFixed(0)).join(', ')} ms; ` +
        `the middle's answer arrived in time in ${answered} of ${RUNS} runs`,
    );
  }, 30_000);

  it('keeps the status across hops: the leaf’s 504 reaches a gateway without fallback as a 504', async () => {
    const res = await get(`${tuned.url}/strict?ms=5000`);
    expect(res.status).toBe(504);
    expect(res.ms).toBeLessThan(BUDGET_MS + 50);
  });

  it('a client leaving the gateway reaches the leaf', async () => {
    const id = `gone${Date.now()}`;
    const before = leaf.output.length;
    const req = http.get(`${tuned.url}/gateway?ms=10000&id=${id}`, {
      agent: false,
      headers: { 'x-request-budget-ms': '5000' },
    });
    req.on('error', () => {});
    // Let the request travel to the leaf (2 hops of 30 ms), then leave.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const leftAt = performance.now();
    req.destroy();
    let reachedMs = -1;
    while (performance.now() - leftAt < 3000) {
      if (leaf.output.slice(before).some((line) => line === `CLOSED leaf ${id}`)) {
        reachedMs = performance.now() - leftAt;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect(reachedMs).toBeGreaterThanOrEqual(2 * HOP_MS - 5);
    expect(reachedMs).toBeLessThan(1000);
    measured.push(`client disconnect at the gateway reached the leaf after ${reachedMs.toFixed(0)} ms`);
  });
});
