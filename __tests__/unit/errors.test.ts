import {
  BudgetExceededError,
  ClientClosedError,
  FanoutError,
  OverloadedError,
  SiblingFailedError,
  TaskFailedError,
  WorkerCrashedError,
  WorkerScriptError,
} from 'express-fanout';
import * as entry from 'express-fanout';
import * as errorsModule from '../../lib/errors';
import { quietly } from '../../lib/errors';

describe('errors', () => {
  it('every error extends FanoutError and Error and is named after its class', () => {
    const errors = [
      new BudgetExceededError(['db'], 200),
      new TaskFailedError('db', new Error('boom')),
      new OverloadedError(['db'], 'queue full'),
      new ClientClosedError(['db']),
      new SiblingFailedError('api', new TaskFailedError('db', new Error('boom'))),
      new WorkerCrashedError('fib', new Error('exit')),
      new WorkerScriptError('no script'),
    ];
    for (const error of errors) {
      expect(error).toBeInstanceOf(FanoutError);
      expect(error).toBeInstanceOf(Error);
      expect(error.name).toBe(error.constructor.name);
      expect(typeof error.stack).toBe('string');
    }
  });

  it.each([
    ['BudgetExceededError', new BudgetExceededError(['db'], 200), 504],
    ['TaskFailedError', new TaskFailedError('db', new Error('boom')), 502],
    ['OverloadedError', new OverloadedError(['db'], 'queue full'), 503],
    ['ClientClosedError', new ClientClosedError(['db']), 499],
  ] as const)('%s carries status %d and statusCode, like http-errors', (_name, error, status) => {
    expect(error.status).toBe(status);
    expect(error.statusCode).toBe(status);
  });

  it('exposes the message only below 500, as http-errors does', () => {
    expect(new ClientClosedError().expose).toBe(true);
    expect(new BudgetExceededError(['db'], 200).expose).toBe(false);
    expect(new TaskFailedError('db', new Error('x')).expose).toBe(false);
    expect(new OverloadedError([], 'full').expose).toBe(false);
  });

  it('OverloadedError carries a Retry-After header for Express to send', () => {
    const error = new OverloadedError(['db'], 'queue full (1024/1024)');
    expect(error.headers).toEqual({ 'Retry-After': expect.stringMatching(/^\d+$/) });
    expect(Number(error.headers?.['Retry-After'])).toBe(error.retryAfter);
    expect(new OverloadedError([], 'closed', 5).headers).toEqual({ 'Retry-After': '5' });
  });

  it('errors other than OverloadedError set no headers', () => {
    expect(new BudgetExceededError(['db'], 200).headers).toBeUndefined();
    expect(new TaskFailedError('db', 1).headers).toBeUndefined();
    expect(new ClientClosedError().headers).toBeUndefined();
  });

  it('TaskFailedError names the task and keeps the original in cause, not in its message', () => {
    const original = new Error('password=hunter2 at db.internal:5432');
    const error = new TaskFailedError('db', original);
    expect(error.message).toContain('db');
    expect(error.message).not.toContain('hunter2');
    expect(error.message).not.toContain(original.message);
    expect(error.cause).toBe(original);
    expect(error.tasks).toEqual(['db']);
  });

  it('TaskFailedError keeps a thrown non-Error as its cause', () => {
    expect(new TaskFailedError('db', 'plain string').cause).toBe('plain string');
    const error = new TaskFailedError('db', undefined);
    expect(error.message).toContain('db');
  });

  it('BudgetExceededError names every task concerned and the budget', () => {
    const error = new BudgetExceededError(['db', 'api'], 250);
    expect(error.message).toContain('`db`');
    expect(error.message).toContain('`api`');
    expect(error.message).toContain('250');
    expect(error.tasks).toEqual(['db', 'api']);
    expect(error.budgetMs).toBe(250);
    expect(error.kind).toBe('deadline');
  });

  it('BudgetExceededError distinguishes a task timeout from the request deadline', () => {
    const error = new BudgetExceededError(['db'], 150, 'timeout');
    expect(error.kind).toBe('timeout');
    expect(error.message).toContain('150');
    expect(error.message).toContain('db');
  });

  it('ClientClosedError and OverloadedError name their tasks', () => {
    expect(new ClientClosedError(['db']).message).toContain('db');
    expect(new OverloadedError(['api'], 'queue full').message).toContain('api');
    expect(new OverloadedError(['api'], 'queue full').message).toContain('queue full');
  });

  it('SiblingFailedError takes the status of the failure that caused it', () => {
    const cause = new BudgetExceededError(['db'], 100);
    const error = new SiblingFailedError('api', cause);
    expect(error.status).toBe(504);
    expect(error.cause).toBe(cause);
    expect(error.message).toContain('api');
  });

  it('WorkerCrashedError is a TaskFailedError (502); WorkerScriptError is a 500', () => {
    const crashed = new WorkerCrashedError('fib', new Error('exit 1'));
    expect(crashed).toBeInstanceOf(TaskFailedError);
    expect(crashed.status).toBe(502);
    expect(new WorkerScriptError('missing').status).toBe(500);
  });

  it('exports every error class from the package entry, each a FanoutError with its status', () => {
    const classes = Object.entries(entry).filter(
      ([, value]) => typeof value === 'function' && value.prototype instanceof Error,
    );
    // Every class of lib/errors.ts (and DownstreamError of lib/fetch.ts) is reachable from the package entry.
    const declared = Object.entries(errorsModule).filter(
      ([, value]) => typeof value === 'function' && value.prototype instanceof Error,
    );
    for (const [name] of declared) expect(entry).toHaveProperty(name);
    expect(classes.map(([name]) => name).sort()).toEqual(
      [
        'BudgetExceededError',
        'CallTooLargeError',
        'ClientClosedError',
        'DownstreamError',
        'FanoutError',
        'OverloadedError',
        'SiblingFailedError',
        'TaskFailedError',
        'TaskSkippedError',
        'WorkerArgumentsError',
        'WorkerCrashedError',
        'WorkerScriptError',
      ].sort(),
    );
    const tooLarge = new entry.CallTooLargeError(['a', 'b'], 1, 'perRequest 1 + maxQueue 0');
    expect(tooLarge).toBeInstanceOf(entry.FanoutError);
    expect(tooLarge.status).toBe(500);
  });

  it('a FanoutError built by hand carries what it is given', () => {
    const error = new FanoutError('custom', 500, ['x'], { headers: { 'X-A': '1' } });
    expect(error).toMatchObject({
      message: 'custom',
      status: 500,
      statusCode: 500,
      expose: false,
      tasks: ['x'],
    });
    expect(error.headers).toEqual({ 'X-A': '1' });
    expect(new FanoutError('m', 400).tasks).toEqual([]);
  });
});

describe('quietly()', () => {
  it('builds the error without a stack trace and restores Error.stackTraceLimit, even when the builder throws', () => {
    const limit = Error.stackTraceLimit;
    const error = quietly(() => new OverloadedError(['db'], 'full'));
    expect(error).toBeInstanceOf(OverloadedError);
    expect(error.message).toBe('Task `db` shed: full');
    expect(error.stack).not.toMatch(/\n\s+at /);
    expect(Error.stackTraceLimit).toBe(limit);
    expect(() =>
      quietly(() => {
        throw new RangeError('builder failed');
      }),
    ).toThrow('builder failed');
    expect(Error.stackTraceLimit).toBe(limit);
  });
});
