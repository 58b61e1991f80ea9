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

/** Task names in messages: at most this many characters of one name, and this many names. */
const NAME_CHARS = 64;
const NAMES_SHOWN = 3;

/** `` `db` `` for a name, cut to {@link NAME_CHARS} characters: a message stays small whatever the names. */
export function quote(name: string): string {
  return name.length > NAME_CHARS ? `\`${name.slice(0, NAME_CHARS)}…\`` : `\`${name}\``;
}

/**
 * `Task \`db\``, `Tasks \`a\`, \`b\``, or `Tasks \`t0\`, \`t1\`, \`t2\` and 9997 more`: a few names and the count
 * of the rest, so that an error about 10,000 tasks is still a one-line message (under 1 KB), in every log line.
 */
export function list(tasks: readonly string[]): string {
  if (tasks.length === 0) return 'The request';
  if (tasks.length === 1) return `Task ${quote(tasks[0]!)}`;
  const shown = tasks.length > NAMES_SHOWN + 1 ? NAMES_SHOWN : tasks.length;
  let out = 'Tasks ';
  for (let i = 0; i < shown; i++) out += (i > 0 ? ', ' : '') + quote(tasks[i]!);
  return shown < tasks.length ? `${out} and ${tasks.length - shown} more` : out;
}

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

/**
 * An optional task was not started: its name's recent p95 latency exceeds the time left (`skipWhenLate`), so it
 * took its fallback at once, without a slot. If that fallback fails too, `all()` rejects with a 502
 * `TaskFailedError` ("failed and its fallback …") whose `cause` is the fallback's error, as for any task.
 */
export class TaskSkippedError extends FanoutError {
  /** The name's recent p95 and the time that was left, ms. */
  readonly p95Ms: number;
  readonly leftMs: number;

  constructor(task: string, p95Ms: number, leftMs: number) {
    super(
      `Task ${quote(task)} skipped: its recent p95 (${Math.round(p95Ms)} ms) exceeds the ${Math.max(0, Math.round(leftMs))} ms left`,
      504,
      [task],
    );
    this.p95Ms = p95Ms;
    this.leftMs = leftMs;
  }
}

/** A required task threw or rejected; `cause` holds what it threw. 502. */
export class TaskFailedError extends FanoutError {
  constructor(task: string, cause: unknown, detail = 'failed') {
    super(`Task ${quote(task)} ${detail}`, 502, [task], { cause });
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

/**
 * The client disconnected before the response was sent; the request's tasks were aborted. 499 (nginx's
 * "Client Closed Request"). Nobody reads the answer, so `gather()` writes none; a handler should not either.
 */
export class ClientClosedError extends FanoutError {
  constructor(tasks: readonly string[] = []) {
    super(`Client Closed Request: ${list(tasks)} aborted, the client closed the connection`, 499, tasks);
  }
}

/**
 * An `all()` call with more required tasks ready at once than the scheduler can ever hold (`perRequest` running
 * plus `maxQueue` waiting): a programming error, not load, so 500 and no `Retry-After`.
 */
export class CallTooLargeError extends FanoutError {
  constructor(tasks: readonly string[], limit: number, detail: string) {
    super(
      `${list(tasks)}: the call has ${tasks.length} required tasks ready at once, but at most ${limit} can ever ` +
        `be admitted (${detail}); split the call or raise the limits`,
      500,
      tasks,
    );
  }
}

/** A task was aborted because a required sibling in the same call failed; `cause` holds that failure. */
export class SiblingFailedError extends FanoutError {
  constructor(task: string, cause: FanoutError) {
    super(`Task ${quote(task)} aborted: ${cause.message}`, cause.status, [task], { cause });
  }
}

/** The worker running a task exited, crashed or ran out of its `resourceLimits`; the worker is replaced. 502. */
export class WorkerCrashedError extends TaskFailedError {
  constructor(task: string, cause: unknown) {
    super(task, cause, 'failed: its worker thread crashed and was replaced');
  }
}

/**
 * The worker script could not be loaded (missing file, syntax error, no such method registered). 500. `tasks`
 * names the task when the problem is one call's (an unknown method, no script); it is empty when the script
 * itself is broken (every call fails alike).
 */
export class WorkerScriptError extends FanoutError {
  constructor(message: string, cause?: unknown, tasks: readonly string[] = []) {
    super(message, 500, tasks, cause === undefined ? undefined : { cause });
  }
}

/**
 * A worker call's arguments (or its `transfer` list) cannot be sent to a thread: a function, a symbol, a Proxy,
 * a MessagePort missing from `transfer` … A programming error, so 500 (not a failed dependency); the message
 * names the task and the argument's path (``Task `add` cannot send its arguments to a worker thread:
 * `args[0].onDone` is a function``).
 */
export class WorkerArgumentsError extends FanoutError {
  constructor(task: string, problem: string) {
    super(`Task ${quote(task)} cannot send its arguments to a worker thread: ${problem}`, 500, [task]);
  }
}

/** `value instanceof type`, false where asking throws (a revoked Proxy's prototype cannot be read). */
export function isInstance<T>(value: unknown, type: abstract new (...args: never[]) => T): value is T {
  try {
    return value instanceof type;
  } catch {
    return false;
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
