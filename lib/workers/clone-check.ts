import { types } from 'node:util';
import { ReadableStream, TransformStream, WritableStream } from 'node:stream/web';
import * as threads from 'node:worker_threads';
import { describe } from '../validate';

/**
 * Why `args` (with `transfer`) cannot be posted to a thread, or `undefined` if they can. a call is
 * posted later, when a thread is free, and a `DataCloneError` there would fail it late (or throw out of a
 * message handler), so they are checked now, by a walk that applies the structured-clone rules:
 * primitives, plain objects, arrays, typed arrays and buffers (O(1), never copied), dates, regexps, maps,
 * sets and errors are checked in place; functions, symbols, proxies, promises and unlisted MessagePorts are
 * refused with their path (`args[0].onDone`); any other object (a class instance, a Node.js host object
 * such as a Blob or a socket) is handed to `structuredClone` alone, which answers exactly.
 *
 * Cost, measured side by side on the shared 2-core machine (medians, under load): 0.6 µs for
 * `[1, 'abc', { a: 1 }]`, 0.35 ms for 1,000 rows of 5 fields, 0.6 ms for 100,000 numbers, 1 µs for a 1 MB
 * or 10 MB Buffer. `structuredClone(args)`, exact by construction, costs a full copy: 2.3 µs, 1.2 ms, 3.2 ms,
 * 0.75 ms and 12 ms for the same values.
 */
export function checkArgs(args: unknown, transfer: unknown): string | undefined {
  if (!Array.isArray(args)) return `expected \`args\` to be an array, got ${describe(args)}`;
  const transferable = new Set<unknown>();
  if (transfer !== undefined) {
    if (!Array.isArray(transfer)) return `expected \`transfer\` to be an array, got ${describe(transfer)}`;
    for (const [i, item] of transfer.entries()) {
      const problem = checkTransferable(item);
      if (problem) return `\`transfer[${i}]\` ${problem}`;
      if (transferable.has(item)) return `\`transfer[${i}]\` is listed twice`;
      transferable.add(item);
    }
  }
  try {
    const failure = walk(args, transferable, new Set());
    return failure && describeFailure(failure);
  } catch (error) {
    // A getter that throws (postMessage would throw the same), or a structure too deep to walk.
    return `reading them threw ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`;
  }
}

function describeFailure(failure: WalkFailure, root = 'args'): string {
  return `\`${root}${failure.path.reverse().join('')}\` ${failure.reason}`;
}

/**
 * Why `value` cannot be structured-cloned, naming the path of the bad part under `root`
 * (`` `workerData.onOpen` is a function ``), or `undefined` if it can. The walk of {@link checkArgs}.
 */
export function cloneProblem(value: unknown, root: string): string | undefined {
  try {
    const failure = walk(value, new Set(), new Set());
    return failure && describeFailure(failure, root);
  } catch (error) {
    return `reading it threw ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`;
  }
}

function checkTransferable(item: unknown): string | undefined {
  if (types.isArrayBuffer(item)) {
    const untransferable = (threads as { isMarkedAsUntransferable?: (o: unknown) => boolean })
      .isMarkedAsUntransferable;
    return untransferable?.(item) ? 'is an ArrayBuffer that Node.js marks as untransferable' : undefined;
  }
  if (
    item instanceof threads.MessagePort ||
    item instanceof ReadableStream ||
    item instanceof WritableStream ||
    item instanceof TransformStream
  ) {
    return undefined;
  }
  if (ArrayBuffer.isView(item)) return 'is a typed array or DataView: list its `.buffer` instead';
  return `is not transferable (an ArrayBuffer, MessagePort or web stream): got ${describe(item)}`;
}

interface WalkFailure {
  reason: string;
  path: string[];
}

function at(failure: WalkFailure, segment: string): WalkFailure {
  failure.path.push(segment);
  return failure;
}

function walk(value: unknown, transfer: ReadonlySet<unknown>, seen: Set<object>): WalkFailure | undefined {
  switch (typeof value) {
    case 'function':
      return { reason: 'is a function', path: [] };
    case 'symbol':
      return { reason: 'is a symbol', path: [] };
    case 'object':
      break;
    default:
      return undefined;
  }
  if (value === null || seen.has(value)) return undefined;
  seen.add(value);
  if (transfer.has(value)) return undefined;
  if (types.isProxy(value)) return { reason: 'is a Proxy', path: [] };
  if (ArrayBuffer.isView(value) || types.isAnyArrayBuffer(value)) {
    // A detached buffer reads as empty; only then is it worth asking the serializer.
    if (value.byteLength === 0 && !(ArrayBuffer.isView(value) && transfer.has(value.buffer))) {
      return serializes(value) ? undefined : { reason: 'is a detached buffer', path: [] };
    }
    return undefined;
  }
  if (Array.isArray(value)) {
    // Named properties (sent too) and holes are rare and cost an Object.keys to see: done for arrays up to
    // 1,000 items, where it is cheap; a longer one is read by index only (its named properties unchecked).
    const keys = value.length <= 1000 ? Object.keys(value) : undefined;
    if (keys === undefined || keys.length === value.length) {
      for (let i = 0; i < value.length; i++) {
        const failure = walk(value[i], transfer, seen);
        if (failure) return at(failure, `[${i}]`);
      }
      return undefined;
    }
    for (const key of keys) {
      const failure = walk((value as unknown as Record<string, unknown>)[key], transfer, seen);
      if (failure) return at(failure, segment(key));
    }
    return undefined;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) {
    const record = value as Record<string, unknown>;
    for (const key in record) {
      const failure = walk(record[key], transfer, seen);
      if (failure) return at(failure, segment(key));
    }
    return undefined;
  }
  if (types.isDate(value) || types.isRegExp(value)) return undefined;
  if (types.isNativeError(value)) {
    // The serializer sends an error's name, message, stack and cause.
    const cause = Object.hasOwn(value, 'cause') ? walk((value as Error).cause, transfer, seen) : undefined;
    return cause && at(cause, '.cause');
  }
  if (types.isBoxedPrimitive(value)) {
    return types.isSymbolObject(value) ? { reason: 'is a symbol', path: [] } : undefined;
  }
  if (types.isMap(value)) {
    for (const [k, v] of value) {
      const failure = walk(k, transfer, seen) ?? walk(v, transfer, seen);
      if (failure) return at(failure, '.<map entry>');
    }
    return undefined;
  }
  if (types.isSet(value)) {
    for (const v of value) {
      const failure = walk(v, transfer, seen);
      if (failure) return at(failure, '.<set entry>');
    }
    return undefined;
  }
  if (value instanceof threads.MessagePort)
    return { reason: 'is a MessagePort missing from `transfer`', path: [] };
  // Class instances, Node.js host objects (Blob, KeyObject, sockets …): ask the serializer itself.
  if (serializes(value)) return undefined;
  const type = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return {
    reason: `is ${typeof type === 'string' && type ? `a ${type}` : 'an object'}, which cannot be cloned`,
    path: [],
  };
}

function serializes(value: unknown): boolean {
  try {
    structuredClone(value);
    return true;
  } catch {
    return false;
  }
}

function segment(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key)
    ? `.${key}`
    : /^\d+$/.test(key)
      ? `[${key}]`
      : `[${JSON.stringify(key)}]`;
}
