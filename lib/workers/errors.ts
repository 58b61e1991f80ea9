import { basename, dirname, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { WorkerScriptError } from '../errors';
import { didYouMean } from '../validate';
import { LOAD_FAILURE } from './bootstrap';

const BUILTIN_ERRORS: Record<string, ErrorConstructor> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

/** A TypeScript source file, which Node.js 20 cannot run as it is. */
const TYPESCRIPT = /\.[cm]?ts$/;
/**
 * What a `.ts` worker script that failed to load is told: the two ways to run it. A require hook, because the
 * thread's bootstrap `require()`s the script first; `--import tsx` in the threads' `execArgv` does not load it
 * on Node.js 20 (tried).
 */
const TYPESCRIPT_HINT =
  '. It is a TypeScript file: compile it and point `workers.script` at the `.js` output, or give the threads ' +
  "tsx's require hook: `workers: { script, execArgv: ['--require', 'tsx/cjs'] }`";

/**
 * Turns what a thread reports (a method's error, a load failure) into main-thread errors, with the script's
 * path and folder cut from every message: a message may reach a client, a path must not.
 */
export class ScriptErrors {
  /** The script's file name, as messages name it. */
  readonly name: string;
  /** The script's path, `file:` URL and folder, each with the text that replaces it. */
  readonly #redactions: [string, string][];
  readonly #script: string | undefined;

  constructor(script: string | undefined) {
    this.#script = script;
    this.name = script === undefined ? '' : basename(script);
    this.#redactions =
      script === undefined
        ? []
        : [
            [pathToFileURL(script).href, this.name],
            [script, this.name],
            [pathToFileURL(dirname(script) + sep).href, ''],
            [dirname(script) + sep, ''],
          ];
  }

  noScript(task: string): WorkerScriptError {
    return new WorkerScriptError(
      `Task \`${task}\` needs a worker thread, but \`workers.script\` is not set: ` +
        'pass fanout({ workers: { script } }) with a script that calls workerpool.worker({ ... })',
      undefined,
      [task],
    );
  }

  /** `methods`: the names the script registers, when known, for a "did you mean". */
  unknownMethod(task: string, method: string, methods?: readonly string[]): WorkerScriptError {
    const guess = methods && didYouMean(method, methods);
    return new WorkerScriptError(
      `Task \`${task}\` calls \`${method}\`, which the worker script \`${this.name}\` does not register ` +
        'with workerpool.worker({ ... })' +
        (guess ? `. Did you mean \`${guess}\`?` : ''),
      undefined,
      [task],
    );
  }

  exitedWhileLoading(): WorkerScriptError {
    return new WorkerScriptError(`The worker script \`${this.name}\` called process.exit() while loading`);
  }

  /** Whether a thread's error is the bootstrap's report that the script failed to load. */
  isLoadFailure(remote: Record<string, unknown>): boolean {
    return remote[LOAD_FAILURE] === true;
  }

  loadError(failure: Record<string, unknown>): WorkerScriptError {
    if (failure.kind === 'unregistered') {
      return new WorkerScriptError(
        `The worker script \`${this.name}\` loaded but registers no methods: call workerpool.worker({ ... }) in it`,
      );
    }
    const cause = this.local(failure);
    const location = this.#location(String(failure.stack ?? ''));
    return new WorkerScriptError(
      `The worker script \`${this.name}\` failed to load: ${cause.name}: ${cause.message}` +
        (location ? ` (at ${location})` : '') +
        (TYPESCRIPT.test(this.name) ? TYPESCRIPT_HINT : ''),
      cause,
    );
  }

  /**
   * A main-thread copy of a thread's error given as its fields: the same built-in class where there is one,
   * its `name`, its message without the script's path and folder, and its own properties such as `code`.
   */
  local(remote: unknown): Error {
    if (typeof remote !== 'object' || remote === null) return new Error(this.redact(String(remote)));
    const fields = remote as Record<string, unknown>;
    const rawMessage = typeof fields.message === 'string' ? fields.message : String(fields.message ?? '');
    const message = this.redact(rawMessage);
    let name = typeof fields.name === 'string' && fields.name !== '' ? fields.name : undefined;
    if (name === undefined && typeof fields.stack === 'string') {
      const head = /^([A-Za-z_$][\w$]*)(?::|\n|$)/.exec(fields.stack);
      if (head && fields.stack.startsWith(rawMessage === '' ? head[1]! : `${head[1]}: ${rawMessage}`)) {
        name = head[1];
      }
    }
    name ??= 'Error';
    const error = new (BUILTIN_ERRORS[name] ?? Error)(message);
    if (error.name !== name) {
      Object.defineProperty(error, 'name', { value: name, writable: true, configurable: true });
    }
    for (const key of Object.keys(fields)) {
      if (key === 'name' || key === 'message' || key === 'stack' || key === LOAD_FAILURE) continue;
      if (key === 'kind' && fields[LOAD_FAILURE] === true) continue;
      Object.defineProperty(error, key, {
        value: fields[key],
        writable: true,
        enumerable: true,
        configurable: true,
      });
    }
    // The thread's frames (paths included: a stack is for logs, never for a client), under the clean message.
    if (typeof fields.stack === 'string') {
      const frames = fields.stack.split('\n').filter((line) => line.startsWith('    at '));
      error.stack = [`${name}: ${message}`, ...frames].join('\n');
    }
    return error;
  }

  redact(text: string): string {
    for (const [from, to] of this.#redactions) text = text.split(from).join(to);
    return text;
  }

  /** `script.js:3:7` from the first line of `stack` that points into the script. */
  #location(stack: string): string | undefined {
    const script = this.#script;
    if (script === undefined) return undefined;
    for (const prefix of [script, pathToFileURL(script).href]) {
      const at = stack.indexOf(prefix + ':');
      if (at === -1) continue;
      const position = /^:(\d+)(?::(\d+))?/.exec(stack.slice(at + prefix.length));
      if (position) return `${this.name}:${position[1]}${position[2] ? ':' + position[2] : ''}`;
    }
    return undefined;
  }
}
