// `express-fanout/otel`: one OpenTelemetry span per task, through `@opentelemetry/api` (an optional peer
// dependency, loaded by the first call of `otel()`, never by importing the package).
import { performance } from 'node:perf_hooks';
import type { Attributes, Context, Span, Tracer } from '@opentelemetry/api';
import type { FanoutMiddleware, ObservedTask, TaskEvent, TaskProbe } from '../types';
import { outcomeOf } from './outcome';

export interface OtelOptions {
  /**
   * The tracer the spans come from.
   * @default `trace.getTracer('express-fanout')` of the global tracer provider
   */
  tracer?: Tracer;
  /**
   * Also trace tasks with no active span around their call (they would be root spans, one trace each).
   * @default false: only tasks under a request span (an instrumented server's, or one the app started)
   */
  roots?: boolean;
}

/** What `otel()` returns: `remove()` stops tracing new tasks (spans already open still end). */
export interface OtelTracing {
  remove(): void;
}

type Api = typeof import('@opentelemetry/api');

/**
 * Traces every task of the middleware: a span named after the task, a child of the span active where
 * `req.fanout.all()` (or `settle`, `run`, `worker`) was called, from the task's submission to its final
 * value. Each attempt of the task runs inside the span's context, so a span an instrumented client starts in
 * the task (`fetch`, `pg` …) is the task span's child. Attributes: `fanout.outcome` (`fulfilled`,
 * `fallback`, `failed`, `timeout`, `shed`, `skipped`, `aborted`), `fanout.attempts` (and `fanout.retried`,
 * `fanout.hedged` when there were any), `fanout.queue_ms` (the wait for a slot or a thread),
 * `fanout.budget_left_ms` (what was left of the task's deadline when its first attempt ran). A task that did
 * not fulfil records its error (`recordException`); one that did not fall back either has status ERROR.
 * ```ts
 * import { otel } from 'express-fanout/otel';
 * const fo = fanout({ budgetMs: 500 });
 * otel(fo);
 * ```
 */
export function otel(fo: Pick<FanoutMiddleware, 'observe'>, options: OtelOptions = {}): OtelTracing {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`Expected the options of \`otel()\` to be an object, got ${typeof options}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== 'tracer' && key !== 'roots') {
      throw new TypeError(`Unknown option \`${key}\` of \`otel()\`. Known options: tracer, roots`);
    }
  }
  const api = load();
  const tracer = options.tracer ?? api.trace.getTracer('express-fanout');
  const roots = options.roots === true;
  const stop = fo.observe({
    task(task: ObservedTask): TaskProbe | undefined {
      const parent = api.context.active();
      if (!roots && api.trace.getSpan(parent) === undefined) return undefined;
      return new TaskSpan(api, tracer, task, parent);
    },
  });
  return { remove: stop };
}

/** One task's span, started at its first attempt (or, for a task that never ran, at its end). */
class TaskSpan implements TaskProbe {
  private span: Span | null = null;
  private context: Context | null = null;

  constructor(
    private readonly api: Api,
    private readonly tracer: Tracer,
    private readonly task: ObservedTask,
    private readonly parent: Context,
  ) {}

  run<T>(attempt: number, fn: () => T): T {
    if (this.span === null) {
      this.open();
      this.span!.setAttribute('fanout.budget_left_ms', round(this.task.deadline - performance.now()));
    } else this.span.addEvent('fanout.attempt', { 'fanout.attempt': attempt });
    return this.api.context.with(this.context!, fn);
  }

  end(event: TaskEvent): void {
    if (this.span === null) this.open();
    const span = this.span!;
    const attributes: Attributes = {
      'fanout.outcome': outcomeOf(event),
      'fanout.attempts': event.attempts,
    };
    if (event.queuedMs !== undefined) attributes['fanout.queue_ms'] = round(event.queuedMs);
    if (event.retried !== undefined) attributes['fanout.retried'] = event.retried;
    if (event.hedged !== undefined) attributes['fanout.hedged'] = event.hedged;
    if (event.coalesced) attributes['fanout.coalesced'] = true;
    span.setAttributes(attributes);
    if (event.status !== 'fulfilled') {
      const error = event.error;
      if (error instanceof Error) span.recordException(error);
      else span.recordException(String(error));
      if (!event.fallback) {
        span.setStatus({
          code: this.api.SpanStatusCode.ERROR,
          message: error instanceof Error ? error.message : event.status,
        });
      }
    }
    span.end(epoch(this.task.submittedAt + event.ms));
  }

  private open(): void {
    const { api, task } = this;
    this.span = this.tracer.startSpan(
      task.name,
      {
        kind: api.SpanKind.INTERNAL,
        startTime: epoch(task.submittedAt),
        attributes: { 'fanout.task': task.name },
      },
      this.parent,
    );
    this.context = api.trace.setSpan(this.parent, this.span);
  }
}

/** `performance.now()` ms as epoch ms, which every OpenTelemetry SDK takes as a time input. */
const epoch = (ms: number): number => performance.timeOrigin + ms;

const round = (ms: number): number => Math.round(ms * 10) / 10;

function load(): Api {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('@opentelemetry/api') as Api;
  } catch (error) {
    throw new Error(
      'express-fanout/otel needs the `@opentelemetry/api` package: npm install @opentelemetry/api',
      {
        cause: error,
      },
    );
  }
}
