import * as validate from '../../lib/validate';
import { parseTasks } from '../../lib/task-def';

const run = () => 1;

describe('a spec object is validated once, and again whenever it changed', () => {
  afterEach(() => jest.restoreAllMocks());

  it('does not validate a spec object seen before key by key again', () => {
    const spy = jest.spyOn(validate, 'rejectUnknown');
    const db = { run, timeoutMs: 50, fallback: null };
    parseTasks({ db });
    expect(spy).toHaveBeenCalledTimes(1);
    for (let i = 0; i < 5; i++) parseTasks({ db, other: db });
    expect(spy).toHaveBeenCalledTimes(1);
  });

  it('gives the same definition from a remembered spec, under each name it is used with', () => {
    const spec = { run, timeoutMs: 50, retries: 2, hedgeMs: 'p95', key: 'k', fallback: 0 };
    const [first] = parseTasks({ a: spec });
    const [a, b] = parseTasks({ a: spec, b: spec });
    expect(a).toEqual(first);
    expect(b).toEqual({ ...first, name: 'b' });
    // Each call gets its own definitions: one call's `after` never leaks into another's.
    expect(a).not.toBe(first);
  });

  it('validates a spec again when one of its values changed after first use', () => {
    const spec: Record<string, unknown> = { run, timeoutMs: 50 };
    expect(parseTasks({ db: spec })[0]!.timeoutMs).toBe(50);
    spec.timeoutMs = 0;
    expect(() => parseTasks({ db: spec })).toThrow(
      'Task `db`: Expected `timeoutMs` to be an integer from 1 to 2147483647, got `0` (number)',
    );
    spec.timeoutMs = 70;
    expect(parseTasks({ db: spec })[0]!.timeoutMs).toBe(70);
    spec.run = 'not a function';
    expect(() => parseTasks({ db: spec })).toThrow(
      'Expected task `db` to be a function or an object with a `run` function, got `[object Object]` (object)',
    );
  });

  it('validates a spec again when a key was added after first use (a typo is still caught)', () => {
    const spec: Record<string, unknown> = { run };
    parseTasks({ db: spec });
    spec.timeotMs = 5;
    expect(() => parseTasks({ db: spec })).toThrow(
      'Task `db`: Unknown option `timeotMs`. Did you mean `timeoutMs`?',
    );
  });

  it('validates a spec again when a key was renamed, its value unchanged', () => {
    const spec: Record<string, unknown> = { run, timeoutMs: undefined };
    parseTasks({ db: spec });
    delete spec.timeoutMs;
    spec.timeotMs = undefined;
    expect(() => parseTasks({ db: spec })).toThrow('Unknown option `timeotMs`');
  });

  it('sees a fallback removed after first use: the task is required again', () => {
    const spec: Record<string, unknown> = { run, fallback: null };
    expect(parseTasks({ db: spec })[0]!.hasFallback).toBe(true);
    delete spec.fallback;
    expect(parseTasks({ db: spec })[0]!.hasFallback).toBe(false);
  });

  it('does not remember a spec that failed validation', () => {
    const spy = jest.spyOn(validate, 'rejectUnknown');
    const spec = { run, timeoutMs: -1 };
    expect(() => parseTasks({ db: spec })).toThrow('Expected `timeoutMs`');
    expect(() => parseTasks({ db: spec })).toThrow('Expected `timeoutMs`');
    expect(spy).toHaveBeenCalledTimes(2);
  });

  it('validates a spec that is not a plain object on every use (its accessors may answer differently)', () => {
    const spy = jest.spyOn(validate, 'rejectUnknown');
    class Spec {
      run = run;
      get timeoutMs(): number {
        return current;
      }
    }
    let current = 10;
    const spec = new Spec();
    expect(parseTasks({ db: spec })[0]!.timeoutMs).toBe(10);
    current = -1;
    expect(() => parseTasks({ db: spec })).toThrow('Expected `timeoutMs`');
    expect(spy).toHaveBeenCalledTimes(2);
  });

  it('resolves `after` per call for a remembered spec', () => {
    const late = { run, after: ['a'] };
    const [, l1] = parseTasks({ a: run, late });
    expect(l1!.after).toEqual([0]);
    const [, , l2] = parseTasks({ x: run, a: run, late });
    expect(l2!.after).toEqual([1]);
    expect(() => parseTasks({ b: run, late })).toThrow(
      'Task `late` lists `a` in `after`, but this call has no task `a`',
    );
  });
});
