// `express-fanout/prometheus`: a middleware's tasks as Prometheus metrics, through `prom-client` (an optional
// peer dependency, loaded by the first call of `prometheus()`, never by importing the package).
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { DependencyStats, FanoutMiddleware, TaskEvent } from '../types';
import { outcomeOf } from './outcome';

export type { Outcome } from './outcome';

export interface PrometheusOptions {
  /**
   * Where the metrics are registered.
   * @default prom-client's default registry (`register`)
   */
  registry?: Registry;
  /**
   * Prepended to every metric name; give each `fanout()` instance its own when several share a registry.
   * @default 'fanout_'
   */
  prefix?: string;
  /**
   * Task names kept as label values at most; later names are counted under `task="other"`. Task names are
   * code, but `req.fanout.run(fn, name)` may be given anything: the cap keeps the series bounded. The same cap
   * applies, separately, to the `dependency` label of the `fanout_dependency_*` metrics (`dependency="other"`).
   * @default 100
   */
  maxNames?: number;
  /**
   * Callee origins kept as label values of `fanout_transit_margin_seconds` at most; later origins share
   * `origin="other"` (their largest margin). Origins come from the URLs given to `ctx.fetch()`.
   * @default 100
   */
  maxOrigins?: number;
  /**
   * Histogram buckets, seconds.
   * @default [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]: a budget in ms, from 5 ms to 10 s
   */
  buckets?: number[];
}

/** What `prometheus()` returns: `remove()` stops observing and unregisters its metrics. */
export interface PrometheusMetrics {
  /** The names of the registered metrics, prefix included. */
  readonly names: readonly string[];
  remove(): void;
}

export const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** The label value standing for every task name past `maxNames`. */
export const OTHER = 'other';
/**
 * The name `stats().dependencies` gives the bulkhead past its 256 dependencies (lib/scheduler.ts's
 * OVERFLOW_DEPENDENCY, kept as a literal so this entry point does not pull in the scheduler).
 */
const OVERFLOW_DEPENDENCY = '(other)';
/** Characters of a task name kept in a label value. */
const MAX_LABEL = 64;

type PromClient = typeof import('prom-client');

/**
 * Registers the middleware's metrics (names with the default prefix):
 * - `fanout_task_duration_seconds{task,outcome}` histogram: submission to final value, queue wait included;
 * - `fanout_task_queue_seconds{task,outcome}` histogram: the wait for a slot or a thread (tasks that got one);
 * - `fanout_tasks_total{task,outcome}` counter;
 * - `fanout_shed_total`, `fanout_abandoned_total` (write-offs), `fanout_retries_total`, `fanout_hedges_total`
 *   counters, read from `fo.stats()` at scrape time;
 * - `fanout_running`, `fanout_queued`, `fanout_concurrency_limit`, `fanout_worker_threads{state="busy"|"idle"}`,
 *   `fanout_worker_queued` gauges, read from `fo.stats()` at scrape time;
 * - `fanout_dependency_limit`, `fanout_dependency_running`, `fanout_dependency_queued` gauges and
 *   `fanout_dependency_shed_total` counter, label `dependency`: each bulkhead of `fo.stats().dependencies`
 *   (adaptive `concurrency` only), read at scrape time; dependencies past `maxNames` (and the core's own
 *   `'(other)'`) are summed under `dependency="other"`;
 * - `fanout_transit_margin_seconds{origin}` gauge: the learned part of the propagation margin for calls to
 *   each callee origin through `ctx.fetch()` (`fo.stats().transit`), read at scrape time.
 * ```ts
 * import { register } from 'prom-client';
 * import { prometheus } from 'express-fanout/prometheus';
 * const fo = fanout({ budgetMs: 500 });
 * prometheus(fo);
 * app.get('/metrics', async (_req, res) => res.type(register.contentType).send(await register.metrics()));
 * ```
 */
export function prometheus(
  fo: Pick<FanoutMiddleware, 'observe' | 'stats'>,
  options: PrometheusOptions = {},
): PrometheusMetrics {
  const { prefix, maxNames, maxOrigins, buckets, registry: given } = resolve(options);
  const client = load();
  const registry = given ?? client.register;
  const registers = [registry];
  const names: string[] = [];
  const made: Array<Counter | Gauge | Histogram> = [];
  const add = <M extends Counter | Gauge | Histogram>(metric: M): M => {
    names.push((metric as unknown as { name: string }).name);
    made.push(metric);
    return metric;
  };
  const n = (name: string) => `${prefix}${name}`;
  try {
    const duration = add(
      new client.Histogram({
        name: n('task_duration_seconds'),
        help: 'Time of a fan-out task from submission to its final value (queue wait and fallback included)',
        labelNames: ['task', 'outcome'],
        buckets,
        registers,
      }),
    );
    const queue = add(
      new client.Histogram({
        name: n('task_queue_seconds'),
        help: 'Time a fan-out task waited for a slot (or a worker thread) before its first attempt ran',
        labelNames: ['task', 'outcome'],
        buckets,
        registers,
      }),
    );
    const tasks = add(
      new client.Counter({
        name: n('tasks_total'),
        help: 'Fan-out tasks settled, by task name and outcome',
        labelNames: ['task', 'outcome'],
        registers,
      }),
    );
    // Process-wide counters of stats(), turned into Prometheus counters by their increase since the last scrape.
    const fromStats = (name: string, help: string, read: () => number): void => {
      let last = 0;
      add(
        new client.Counter({
          name: n(name),
          help,
          registers,
          collect() {
            const now = read();
            if (now > last) this.inc(now - last);
            last = now;
          },
        }),
      );
    };
    fromStats(
      'shed_total',
      'Tasks shed: refused for want of a slot or a place in the queue',
      () => fo.stats().shed,
    );
    fromStats(
      'abandoned_total',
      'Aborted tasks written off after ignoring their signal for graceMs (their slot freed)',
      () => fo.stats().abandoned,
    );
    fromStats('retries_total', 'Retry attempts made', () => fo.stats().retries);
    fromStats('hedges_total', 'Hedge attempts made', () => fo.stats().hedges);
    const gauge = (name: string, help: string, read: () => number): void => {
      add(
        new client.Gauge({
          name: n(name),
          help,
          registers,
          collect() {
            this.set(read());
          },
        }),
      );
    };
    gauge('running', 'Tasks holding a slot now', () => fo.stats().running);
    gauge('queued', 'Tasks waiting for a slot now', () => fo.stats().queued);
    gauge(
      'concurrency_limit',
      'The concurrency limit now (adaptive, or the configured one)',
      () => fo.stats().limit,
    );
    gauge('worker_queued', 'Worker calls waiting for a thread now', () => fo.stats().workers.pending);
    add(
      new client.Gauge({
        name: n('worker_threads'),
        help: 'Worker threads, by state',
        labelNames: ['state'],
        registers,
        collect() {
          const { busy, idle } = fo.stats().workers;
          this.set({ state: 'busy' }, busy);
          this.set({ state: 'idle' }, idle);
        },
      }),
    );
    // Per-dependency bulkheads, read at scrape time (nothing per task). A dependency keeps the label it got
    // first; those past the cap, and the core's own overflow bulkhead, are summed under `other`. Dependencies
    // never leave `stats().dependencies`, so the labels, once given, stay.
    const dependencies = new Set<string>();
    const dependencyLabel = (name: string): string => {
      if (name === OVERFLOW_DEPENDENCY) return OTHER;
      const value = name.length > MAX_LABEL ? name.slice(0, MAX_LABEL) : name;
      if (dependencies.has(value)) return value;
      if (dependencies.size >= maxNames) return OTHER;
      dependencies.add(value);
      return value;
    };
    const perDependency = (read: (d: DependencyStats) => number): Map<string, number> => {
      const sums = new Map<string, number>();
      for (const [name, d] of Object.entries(fo.stats().dependencies ?? {})) {
        const key = dependencyLabel(name);
        sums.set(key, (sums.get(key) ?? 0) + read(d));
      }
      return sums;
    };
    const dependencyGauge = (name: string, help: string, read: (d: DependencyStats) => number): void => {
      add(
        new client.Gauge({
          name: n(name),
          help,
          labelNames: ['dependency'],
          registers,
          collect() {
            for (const [dependency, sum] of perDependency(read)) this.set({ dependency }, sum);
          },
        }),
      );
    };
    dependencyGauge(
      'dependency_limit',
      'The adaptive limit of each dependency\'s bulkhead now (summed under "other")',
      (d) => d.limit,
    );
    dependencyGauge('dependency_running', 'Tasks of each dependency holding a slot now', (d) => d.running);
    dependencyGauge('dependency_queued', 'Tasks of each dependency waiting for a slot now', (d) => d.queued);
    // As `shed_total`: stats() counts since creation; the counter grows by the increase since the last scrape.
    const lastShed = new Map<string, number>();
    add(
      new client.Counter({
        name: n('dependency_shed_total'),
        help: "Tasks shed by each dependency's bulkhead (a whole call shed counts each of its tasks)",
        labelNames: ['dependency'],
        registers,
        collect() {
          const sums = perDependency((d) => d.shed);
          for (const [dependency, now] of sums) {
            const last = lastShed.get(dependency) ?? 0;
            // inc by 0 too: a dependency with nothing shed yet shows at 0, like the gauges beside it.
            this.inc({ dependency }, now > last ? now - last : 0);
            lastShed.set(dependency, now);
          }
        },
      }),
    );
    const origins = new Set<string>();
    add(
      new client.Gauge({
        name: n('transit_margin_seconds'),
        help: 'Learned transit to a callee origin (round trip minus its reported work), taken off the budget sent there',
        labelNames: ['origin'],
        registers,
        collect() {
          // Origins that aged out leave the series; the labels kept stay the same ones, as for task names.
          this.reset();
          let other = Number.NaN;
          for (const [origin, { marginMs }] of Object.entries(fo.stats().transit ?? {})) {
            if (origins.has(origin) || (origins.size < maxOrigins && origins.add(origin))) {
              this.set({ origin }, marginMs / 1000);
            } else if (!(marginMs <= other)) other = marginMs;
          }
          if (other === other) this.set({ origin: OTHER }, other / 1000);
        },
      }),
    );

    const seen = new Set<string>();
    const label = (name: string): string => {
      const value = name.length > MAX_LABEL ? name.slice(0, MAX_LABEL) : name;
      if (seen.has(value)) return value;
      if (seen.size >= maxNames) return OTHER;
      seen.add(value);
      return value;
    };
    const stop = fo.observe({
      settled(event: TaskEvent): void {
        const labels = { task: label(event.name), outcome: outcomeOf(event) };
        duration.observe(labels, event.ms / 1000);
        if (event.queuedMs !== undefined) queue.observe(labels, event.queuedMs / 1000);
        tasks.inc(labels);
      },
    });
    return {
      names,
      remove() {
        stop();
        for (const name of names) registry.removeSingleMetric(name);
      },
    };
  } catch (error) {
    for (const name of names) registry.removeSingleMetric(name);
    throw error;
  }
}

function resolve(options: PrometheusOptions): Required<Omit<PrometheusOptions, 'registry'>> & {
  registry: Registry | undefined;
} {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`Expected the options of \`prometheus()\` to be an object, got ${typeof options}`);
  }
  const known = ['registry', 'prefix', 'maxNames', 'maxOrigins', 'buckets'];
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TypeError(
        `Unknown option \`${key}\` of \`prometheus()\`. Known options: ${known.join(', ')}`,
      );
    }
  }
  const {
    registry,
    prefix = 'fanout_',
    maxNames = 100,
    maxOrigins = 100,
    buckets = DEFAULT_BUCKETS,
  } = options;
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/.test(prefix)) {
    throw new TypeError(
      `Expected \`prefix\` to be a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*), got \`${String(prefix)}\``,
    );
  }
  if (!Number.isInteger(maxNames) || maxNames < 1) {
    throw new TypeError(`Expected \`maxNames\` to be an integer >= 1, got \`${String(maxNames)}\``);
  }
  if (!Number.isInteger(maxOrigins) || maxOrigins < 1) {
    throw new TypeError(`Expected \`maxOrigins\` to be an integer >= 1, got \`${String(maxOrigins)}\``);
  }
  if (
    !Array.isArray(buckets) ||
    buckets.length === 0 ||
    !buckets.every((b) => typeof b === 'number' && b > 0)
  ) {
    throw new TypeError('Expected `buckets` to be a non-empty array of positive numbers (seconds)');
  }
  if (registry !== undefined && (typeof registry !== 'object' || registry === null)) {
    throw new TypeError(`Expected \`registry\` to be a prom-client Registry, got ${typeof registry}`);
  }
  return { registry, prefix, maxNames, maxOrigins, buckets };
}

function load(): PromClient {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('prom-client') as PromClient;
  } catch (error) {
    throw new Error('express-fanout/prometheus needs the `prom-client` package: npm install prom-client', {
      cause: error,
    });
  }
}
