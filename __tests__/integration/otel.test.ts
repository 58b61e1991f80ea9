import express, { type NextFunction, type Request, type Response } from 'express';
import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import { gather } from 'express-fanout';
import { otel } from 'express-fanout/otel';
import { delay, waitFor } from './helpers/async';
import { useHarness } from './helpers/harness';

// The SDK's in-memory exporter, with the AsyncLocalStorage context manager an instrumented Node app uses.
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const contextManager = new AsyncLocalStorageContextManager();
const tracer = provider.getTracer('test');

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
  trace.setGlobalTracerProvider(provider);
});
afterAll(async () => {
  await provider.shutdown();
  contextManager.disable();
  context.disable();
  trace.disable();
});
afterEach(() => exporter.reset());

/** What an instrumented server does: the request runs inside its span, ended when the response is. */
function requestSpan(req: Request, res: Response, next: NextFunction): void {
  const span = tracer.startSpan(`GET ${req.path}`);
  res.on('finish', () => span.end());
  context.with(trace.setSpan(context.active(), span), next);
}

const spans = () => exporter.getFinishedSpans();
const byName = (name: string): ReadableSpan => {
  const span = spans().find((s) => s.name === name);
  if (!span)
    throw new Error(
      `No span ${name}: ${spans()
        .map((s) => s.name)
        .join(', ')}`,
    );
  return span;
};
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const ms = (span: ReadableSpan) => span.duration[0] * 1000 + span.duration[1] / 1e6;

describe('express-fanout/otel', () => {
  const { serve, onCleanup } = useHarness(express);

  it('makes one span per task under the request span, and a span started inside a task its child', async () => {
    const { http, fo } = await serve(
      { concurrency: 1, admission: false },
      (app) =>
        app.get(
          '/',
          gather({
            db: async ({ signal }) => {
              // What an auto-instrumented client does: a span on the active context, after an await.
              await delay(5, 0, signal);
              return tracer.startActiveSpan('SELECT', async (span) => {
                await delay(30, 0, signal);
                span.end();
                return 'rows';
              });
            },
            api: { run: () => Promise.reject(new Error('down')), fallback: null },
          }),
        ),
      { before: (app) => app.use(requestSpan) },
    );
    onCleanup(otel(fo).remove);
    await http.get('/').expect(200);
    await waitFor(() => spans().length === 4, 'the four spans to end');

    const request = byName('GET /');
    const db = byName('db');
    const api = byName('api');
    const select = byName('SELECT');
    expect(parentOf(request)).toBeUndefined();
    expect(parentOf(db)).toBe(request.spanContext().spanId);
    expect(parentOf(api)).toBe(request.spanContext().spanId);
    expect(parentOf(select)).toBe(db.spanContext().spanId);
    for (const span of [db, api, select])
      expect(span.spanContext().traceId).toBe(request.spanContext().traceId);

    expect(db.attributes).toMatchObject({
      'fanout.task': 'db',
      'fanout.outcome': 'fulfilled',
      'fanout.attempts': 1,
    });
    expect(db.attributes['fanout.budget_left_ms']).toBeGreaterThan(0);
    expect(db.status.code).toBe(SpanStatusCode.UNSET);
    expect(ms(db)).toBeGreaterThanOrEqual(30);

    // With one slot, api waited for db: its queue time is an attribute, and its span covers the wait.
    expect(api.attributes['fanout.outcome']).toBe('fallback');
    expect(api.attributes['fanout.queue_ms']).toBeGreaterThanOrEqual(25);
    expect(ms(api)).toBeGreaterThanOrEqual(25);
    expect(api.events.map((e) => e.name)).toContain('exception');
    // A fallback answered: the error is recorded, the span is not an error.
    expect(api.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('records a failure as an error span, and each retry as an event', async () => {
    let calls = 0;
    const { http, fo } = await serve(
      {},
      (app) =>
        app.get(
          '/',
          gather({
            flaky: {
              run: async () => {
                calls++;
                throw new Error(`attempt ${calls} failed`);
              },
              retries: { max: 1, backoffMs: 1 },
            },
          }),
        ),
      { before: (app) => app.use(requestSpan) },
    );
    onCleanup(otel(fo).remove);
    await http.get('/').expect(502);
    await waitFor(() => spans().length === 2, 'the two spans to end');
    const flaky = byName('flaky');
    expect(flaky.status).toEqual({ code: SpanStatusCode.ERROR, message: 'attempt 2 failed' });
    expect(flaky.attributes).toMatchObject({
      'fanout.outcome': 'failed',
      'fanout.attempts': 2,
      'fanout.retried': 1,
    });
    expect(flaky.events.filter((e) => e.name === 'fanout.attempt')).toHaveLength(1);
    expect(flaky.events.find((e) => e.name === 'exception')?.attributes?.['exception.message']).toBe(
      'attempt 2 failed',
    );
  });

  it('traces nothing without a request span, unless roots: true', async () => {
    const { http, fo } = await serve({}, (app) => app.get('/', gather({ a: () => 1 })));
    const tracing = otel(fo);
    await http.get('/').expect(200);
    expect(spans()).toHaveLength(0);
    tracing.remove();
    onCleanup(otel(fo, { roots: true }).remove);
    await http.get('/').expect(200);
    await waitFor(() => spans().length === 1, 'the root span to end');
    expect(parentOf(byName('a'))).toBeUndefined();
  });

  it('costs a task nothing once removed: no probe is made', async () => {
    const { http, fo } = await serve({}, (app) => app.get('/', gather({ a: () => 1 })), {
      before: (app) => app.use(requestSpan),
    });
    otel(fo).remove();
    await http.get('/').expect(200);
    await waitFor(() => spans().length === 1, 'the request span to end');
    expect(spans().map((s) => s.name)).toEqual(['GET /']);
  });
});
