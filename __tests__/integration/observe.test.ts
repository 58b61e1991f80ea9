import express from 'express';
import { gather, type TaskEvent } from 'express-fanout';
import { delay } from './helpers/async';
import { useHarness } from './helpers/harness';

// fo.observe(): what the Prometheus and OpenTelemetry integrations are built on.
describe('fo.observe()', () => {
  const { serve } = useHarness(express);

  it('tells every observer each task’s outcome, after onTask, with its queue wait and attempts', async () => {
    const order: string[] = [];
    const events: TaskEvent[] = [];
    const { http, fo } = await serve(
      { concurrency: 1, admission: false, onTask: (e) => order.push(`onTask ${e.name}`) },
      (app) =>
        app.get(
          '/',
          gather({ first: ({ signal }) => delay(50, 1, signal), second: { run: () => 2, retries: 1 } }),
        ),
    );
    fo.observe({
      settled: (e) => {
        order.push(`observer ${e.name}`);
        events.push(e);
      },
    });
    await http.get('/').expect(200);
    expect(order).toEqual(['onTask first', 'observer first', 'onTask second', 'observer second']);
    const second = events.find((e) => e.name === 'second')!;
    expect(second).toMatchObject({ status: 'fulfilled', attempts: 1 });
    expect(second.queuedMs).toBeGreaterThanOrEqual(40);
    expect(events.find((e) => e.name === 'first')!.queuedMs).toBeLessThan(5);
  });

  it('wraps each attempt’s run in every probe, the first added outermost, and ends each probe once', async () => {
    const log: string[] = [];
    let calls = 0;
    const { http, fo } = await serve({}, (app) =>
      app.get(
        '/',
        gather({
          flaky: {
            run: () => {
              log.push(`run ${calls}`);
              if (calls++ === 0) throw new Error('once');
              return 'ok';
            },
            retries: { max: 1, backoffMs: 1 },
          },
        }),
      ),
    );
    for (const id of ['a', 'b']) {
      fo.observe({
        task: (task) => ({
          run: (attempt, fn) => {
            log.push(`${id} enter ${task.name} ${attempt}`);
            try {
              return fn();
            } finally {
              log.push(`${id} leave ${attempt}`);
            }
          },
          end: (event) => log.push(`${id} end ${event.status} ${event.attempts}`),
        }),
      });
    }
    await http.get('/').expect(200);
    expect(log).toEqual([
      'a enter flaky 0',
      'b enter flaky 0',
      'run 0',
      'b leave 0',
      'a leave 0',
      'a enter flaky 1',
      'b enter flaky 1',
      'run 1',
      'b leave 1',
      'a leave 1',
      'a end fulfilled 2',
      'b end fulfilled 2',
    ]);
  });

  it('keeps serving when an observer throws, and stops calling one once removed', async () => {
    const seen: string[] = [];
    const { http, fo } = await serve({}, (app) => app.get('/', gather({ a: () => 1 })));
    fo.observe({
      settled: () => {
        throw new Error('observer bug');
      },
      task: () => {
        throw new Error('observer bug');
      },
    });
    fo.observe({
      task: () => ({
        run: () => {
          throw new Error('probe bug');
        },
        end: () => {
          throw new Error('probe bug');
        },
      }),
    });
    const remove = fo.observe({ settled: (e) => seen.push(e.name) });
    // A probe whose run throws before calling the function fails that attempt, as the function would.
    await http.get('/').expect(502);
    expect(seen).toEqual(['a']);
    remove();
    await http.get('/').expect(502);
    expect(seen).toEqual(['a']);
    expect(() => fo.observe(null as never)).toThrow('Expected the observer to be an object, got object');
  });
});
