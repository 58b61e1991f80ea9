/**
 * Every error the package produces extends {@link FanoutError}. Like `http-errors`, each carries `status`
 * (and `statusCode`), `expose` (true only below 500) and optional `headers`, so Express's default error
 * handler (finalhandler) answers with the right status and headers. Messages name the task(s) concerned and
 * the numbers involved; they never include a task's own error message, which stays in `cause`.
 */
export class FanoutError extends Error {
  /** HTTP status an Express error handler should answer with. */
  readonly status: number;
  /** Alias of `status`, for handlers that read `statusCode`. */
  readonly statusCode: number;
  /** Whether `message` is safe to show to the client (`status < 500`, as in `http-errors`). */
  readonly expose: boolean;
  /** Headers finalhandler copies onto the error response (`Retry-After` for 503). */
  readonly headers?: Record<string, string>;
  /** Names of the tasks this error is about (empty when it concerns the whole request). */
  readonly tasks: readonly string[];

  constructor(
    message: string,
    status: number,
    tasks: readonly string[] = [],
    options?: { cause?: unknown; headers?: Record<string, string> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.status = status;
    this.statusCode = status;
    this.expose = status < 500;
    this.tasks = tasks;
    if (options?.headers) this.headers = options.headers;
  }
}

const list = (tasks: readonly string[]): string =>
  tasks.length === 0
    ? 'The request'
    : tasks.length === 1
      ? `Task \`${tasks[0]}\``
      : `Tasks ${tasks.map((t) => `\`${t}\``).join(', ')}`;

/** A required task was still running (or queued) at the request deadline or at its own `timeoutMs`. 504. */
export class BudgetExceededError extends FanoutError {
  /** The limit that ran out, in ms: the request budget or the task's `timeoutMs`. */
  readonly budgetMs: number;
  /** `'deadline'` when the request (or call) budget ran out, `'timeout'` when the task's own `timeoutMs` did. */
  readonly kind: 'deadline' | 'timeout';

  constructor(tasks: readonly string[], budgetMs: number, kind: 'deadline' | 'timeout' = 'deadline') {
    const what = kind === 'timeout' ? `its ${budgetMs} ms timeout` : `the ${budgetMs} ms budget`;
    super(`${list(tasks)} did not finish within ${what}`, 504, tasks);
    this.budgetMs = budgetMs;
    this.kind = kind;
  }
}

/** A required task threw or rejected; `cause` holds what it threw. 502. */
export class TaskFailedError extends FanoutError {
  constructor(task: string, cause: unknown, detail = 'failed') {
    super(`Task \`${task}\` ${detail}`, 502, [task], { cause });
  }
}

/** No slot and no room in the queue (or the middleware is closed): the work was shed at once. 503. */
export class OverloadedError extends FanoutError {
  /** Seconds suggested to the client, also sent as the `Retry-After` header. */
  readonly retryAfter: number;

  constructor(tasks: readonly string[], detail: string, retryAfter = 1) {
    super(`${list(tasks)} shed: ${detail}`, 503, tasks, {
      headers: { 'Retry-After': String(retryAfter) },
    });
    this.retryAfter = retryAfter;
  }
}

/** The client disconnected before the response was sent; the request's tasks were aborted. 499. */
export class ClientClosedError extends FanoutError {
  constructor(tasks: readonly string[] = []) {
    super(`${list(tasks)} aborted: the client closed the connection`, 499, tasks);
  }
}

/** A task was aborted because a required sibling in the same call failed; `cause` holds that failure. */
export class SiblingFailedError extends FanoutError {
  constructor(task: string, cause: FanoutError) {
    super(`Task \`${task}\` aborted: ${cause.message}`, cause.status, [task], { cause });
  }
}

/** The worker running a task exited, crashed or ran out of its `resourceLimits`; the worker is replaced. 502. */
export class WorkerCrashedError extends TaskFailedError {
  constructor(task: string, cause: unknown) {
    super(task, cause, 'failed: its worker thread crashed and was replaced');
  }
}

/** The worker script could not be loaded (missing file, syntax error, no such method registered). 500. */
export class WorkerScriptError extends FanoutError {
  constructor(message: string, cause?: unknown) {
    super(message, 500, [], cause === undefined ? undefined : { cause });
  }
}

/**
 * Builds an error without capturing a stack trace. For errors made in bulk on paths that must stay cheap
 * under load (shedding, aborting siblings, expiring at a deadline), where the stack would only show the
 * package's own timer or scheduler frames: capturing it costs more than the rest of the error.
 */
export function quietly<E extends Error>(make: () => E): E {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}
