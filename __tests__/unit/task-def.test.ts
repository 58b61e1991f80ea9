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

  describe('a tasks object used again', () => {
    it('reuses its definitions whole, frozen so that no call changes another', () => {
      const spy = jest.spyOn(validate, 'rejectUnknown');
      const tasks = { a: run, b: { run, timeoutMs: 5 }, c: { run, after: ['a'] } };
      const first = parseTasks(tasks);
      expect(parseTasks(tasks)).toBe(first);
      expect(spy).toHaveBeenCalledTimes(2);
      expect(Object.isFrozen(first)).toBe(true);
      expect(first.every((def) => Object.isFrozen(def))).toBe(true);
      expect(first[2]!.after).toEqual([0]);
    });

    it('sees a task replaced, added or removed, and a spec in it changed', () => {
      const tasks: Record<string, unknown> = { a: run, b: { run, timeoutMs: 5 } };
      const first = parseTasks(tasks);
      const other = () => 2;
      tasks.a = other;
      expect(parseTasks(tasks)[0]!.run).toBe(other);
      tasks.c = run;
      expect(parseTasks(tasks).map((def) => def.name)).toEqual(['a', 'b', 'c']);
      delete tasks.c;
      expect(parseTasks(tasks)).toHaveLength(2);
      (tasks.b as Record<string, unknown>).timeoutMs = 'soon';
      expect(() => parseTasks(tasks)).toThrow('Task `b`: Expected `timeoutMs` to be an integer');
      expect(first[1]!.timeoutMs).toBe(5);
    });

    it('sees an `after` naming a task that is gone', () => {
      const tasks: Record<string, unknown> = { a: run, late: { run, after: ['a'] } };
      parseTasks(tasks);
      delete tasks.a;
      expect(() => parseTasks(tasks)).toThrow(
        'Task `late` lists `a` in `after`, but this call has no task `a`',
      );
    });
  });
});
