// A deterministic discrete-event simulation of the bench's overload case, no real time: the real Scheduler,
// Admission and AdaptiveLimit on a fake clock, in front of a downstream that serves `capacity` calls at once
// (`serviceMs` each) and queues the rest in arrival order. Requests arrive in groups (as autocannon's paced
// connections send them), each fans out `calls` tasks with `all()` semantics: whole-call admission, fail-fast
// (a dropped or failed task aborts its siblings, freeing their slots and downstream connections), a deadline.
import { AdaptiveLimit, type AdaptiveLimitSettings } from '../../lib/adaptive-limit';
import { Admission, type AdmissionSettings } from '../../lib/admission';
import { SAMPLE_INTERVAL_MS, type LoopMonitor } from '../../lib/loop-monitor';
import { Lane, Scheduler, type Job } from '../../lib/scheduler';

export interface SimOptions {
  capacity: (t: number) => number;
  serviceMs: number;
  calls: number;
  budgetMs: number;
  /** Requests per second offered, in `groupsPerS` groups a second. */
  rate: number;
  groupsPerS: number;
  durationMs: number;
  /** Measured from here (the start is a transient). */
  fromMs: number;
  concurrency: number;
  maxQueue: number;
  perRequest: number;
  admission: AdmissionSettings | false;
  adaptive: AdaptiveLimitSettings | false;
}

export interface SimResult {
  ok: number;
  okPerS: number;
  okP99: number;
  shedAtOnce: number;
  dropped: number;
  droppedP99: number;
  timedOut: number;
  /** The limit every 100 ms. */
  limits: number[];
}

type Event = { t: number; seq: number; run: () => void };

class Events {
  private heap: Event[] = [];
  private seq = 0;
  push(t: number, run: () => void): void {
    const e = { t, seq: this.seq++, run };
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }
  pop(): Event | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
const less = (a: Event, b: Event): boolean => a.t < b.t || (a.t === b.t && a.seq < b.seq);

const p99 = (values: number[]): number => {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)]!;
};

export function simulateOverload(o: SimOptions): SimResult {
  let now = 0;
  const events = new Events();
  const admission = o.admission ? new Admission(o.admission) : undefined;
  const adaptive = o.adaptive ? new AdaptiveLimit(o.adaptive, 0) : undefined;
  const scheduler = new Scheduler(o.concurrency, o.perRequest, o.maxQueue, {
    ...(admission ? { admission } : {}),
    ...(adaptive ? { adaptive } : {}),
    now: () => now,
  });

  // The downstream: `serving` connections busy, the rest waiting in order.
  let serving = 0;
  const waiting = new Set<Task>();
  const startCall = (task: Task): void => {
    serving++;
    task.inDownstream = 'serving';
    events.push(now + o.serviceMs, () => {
      if (task.inDownstream !== 'serving') return; // cancelled meanwhile
      task.inDownstream = 'none';
      freeConnection();
      task.fulfil();
    });
  };
  const freeConnection = (): void => {
    serving--;
    while (serving < o.capacity(now) && waiting.size > 0) {
      const next = waiting.values().next().value!;
      waiting.delete(next);
      startCall(next);
    }
  };

  const result: SimResult = {
    ok: 0,
    okPerS: 0,
    okP99: 0,
    shedAtOnce: 0,
    dropped: 0,
    droppedP99: 0,
    timedOut: 0,
    limits: [],
  };
  const okLatency: number[] = [];
  const droppedLatency: number[] = [];
  const measured = (r: Request): boolean => r.arrival >= o.fromMs;

  class Task implements Job {
    nextJob: Job | null = null;
    prevJob: Job | null = null;
    queued = false;
    startedAt = 0;
    submittedAt: number;
    deadline: number;
    state: 'queued' | 'running' | 'done' = 'queued';
    inDownstream: 'none' | 'waiting' | 'serving' = 'none';
    constructor(
      readonly request: Request,
      readonly name: string,
    ) {
      this.submittedAt = now;
      this.deadline = request.deadline;
    }
    start(): void {
      this.state = 'running';
      if (serving < o.capacity(now)) startCall(this);
      else {
        this.inDownstream = 'waiting';
        waiting.add(this);
      }
    }
    fulfil(): void {
      this.state = 'done';
      scheduler.release(this.request.lane, this);
      this.request.taskDone();
    }
    drop(): void {
      scheduler.cancel(this.request.lane, this);
      this.state = 'done';
      this.request.fail('dropped');
    }
    abort(): void {
      if (this.state === 'queued') scheduler.cancel(this.request.lane, this);
      else if (this.state === 'running') {
        if (this.inDownstream === 'waiting') waiting.delete(this);
        else if (this.inDownstream === 'serving') freeConnection();
        this.inDownstream = 'none';
        this.startedAt = Number.NaN;
        scheduler.release(this.request.lane, this);
      }
      this.state = 'done';
    }
  }

  let laneId = 0;
  class Request {
    readonly lane: Lane;
    readonly arrival = now;
    readonly deadline = now + o.budgetMs;
    readonly tasks: Task[] = [];
    done = 0;
    over = false;
    constructor() {
      this.lane = new Lane(now, laneId++);
    }
    begin(): void {
      if (scheduler.capacity(this.lane, this.deadline) < o.calls) {
        if (measured(this)) result.shedAtOnce++;
        this.over = true;
        return;
      }
      for (let i = 0; i < o.calls; i++) this.tasks.push(new Task(this, `call${i}`));
      for (const t of this.tasks) {
        if (this.over) break;
        if (scheduler.submit(this.lane, t) === 'shed') {
          t.state = 'done';
          this.fail('dropped');
        }
      }
      if (!this.over) events.push(this.deadline, () => this.fail('timeout'));
    }
    taskDone(): void {
      if (this.over || ++this.done < o.calls) return;
      this.over = true;
      if (measured(this)) {
        result.ok++;
        okLatency.push(now - this.arrival);
      }
    }
    fail(why: 'dropped' | 'timeout'): void {
      if (this.over) return;
      this.over = true;
      if (measured(this)) {
        if (why === 'timeout') result.timedOut++;
        else {
          result.dropped++;
          droppedLatency.push(now - this.arrival);
        }
      }
      scheduler.held(() => {
        for (const t of this.tasks) if (t.state !== 'done') t.abort();
      });
    }
  }

  const groupMs = 1000 / o.groupsPerS;
  const perGroup = o.rate / o.groupsPerS;
  let owed = 0;
  for (let t = 0; t < o.durationMs; t += groupMs) {
    events.push(t, () => {
      owed += perGroup;
      while (owed >= 1) {
        owed--;
        new Request().begin();
      }
    });
  }
  for (let t = 0; t < o.durationMs; t += 100) events.push(t, () => result.limits.push(scheduler.limit));
  for (let e = events.pop(); e && e.t <= o.durationMs + o.budgetMs; e = events.pop()) {
    now = e.t;
    e.run();
  }
  result.okPerS = (result.ok * 1000) / (o.durationMs - o.fromMs);
  result.okP99 = p99(okLatency);
  result.droppedP99 = p99(droppedLatency);
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// Several routes and dependencies behind one scheduler, with bulkheads and an event loop that can be slow.

export interface Dependency {
  /** Calls it serves at once; the rest wait in arrival order. */
  capacity: (t: number) => number;
  serviceMs: number;
}

export interface Route {
  /** Its tasks' names: each call `i` of a request is task `${names[i % names.length]}`. */
  names: string[];
  /** Which dependency a task name calls (and, with `bulkheadBy: 'dependency'`, whose bulkhead it uses). */
  dependency: string;
  calls: number;
  budgetMs: number;
  /** Open loop: requests a second, in `groupsPerS` groups. */
  rate?: number;
  groupsPerS?: number;
  /** Closed loop: this many clients, each sending its next request as soon as the last one is answered. */
  clients?: number;
}

export interface MixOptions {
  dependencies: Record<string, Dependency>;
  routes: Record<string, Route>;
  durationMs: number;
  fromMs: number;
  concurrency: number;
  maxQueue: number;
  perRequest: number;
  admission: AdmissionSettings | false;
  adaptive: AdaptiveLimitSettings | false;
  /**
   * `'name'`: a bulkhead per task name (the runtime's default); `'dependency'`: per dependency (the task
   * option); `false`: one limit for everything (the scheduler before bulkheads).
   */
  bulkheadBy: 'name' | 'dependency' | false;
  /**
   * The event loop's queueing delay at `t`, ms, given the requests in flight: every reply waits this long
   * before JavaScript sees it, and every answer (a 503 included) too. Default 0.
   */
  loopLagMs?: (t: number, requestsInFlight: number) => number;
  /** Give the scheduler the loop monitor (the fix); `false`: it does not know the loop's delay (before it). */
  monitor?: boolean;
}

export interface RouteResult {
  requests: number;
  ok: number;
  okPerS: number;
  okP99: number;
  shed: number;
  /** Sheds decided at admission (before any task of the request started or queued). */
  shedAtOnce: number;
  /** How long a shed request waited for its answer, ms: p99 (0 for a shed at admission). */
  shedP99: number;
  timedOut: number;
}

export interface MixResult {
  routes: Record<string, RouteResult>;
  /** Each bulkhead's limit every 100 ms (the process-wide one under `''` without bulkheads). */
  limits: Record<string, number[]>;
}

/** The lag sampler of loop-monitor.ts, in closed form: a tick every `lag + 10` ms, each `lag` late. */
class SimLoop implements LoopMonitor {
  lag = 0;
  private accrued = 0;
  private since = 0;
  constructor(private readonly clock: () => number) {}
  set(now: number, lag: number): void {
    this.delayTotalMs(now);
    this.lag = lag;
  }
  delayTotalMs(now = this.clock()): number {
    if (now > this.since) {
      this.accrued += ((now - this.since) * this.lag) / (this.lag + SAMPLE_INTERVAL_MS);
      this.since = now;
    }
    return this.accrued;
  }
  recentDelayMs(): number {
    return this.lag;
  }
  utilization(): number {
    return this.lag > 0 ? 1 : 0.5;
  }
}

export function simulateMix(o: MixOptions): MixResult {
  let now = 0;
  const events = new Events();
  const loop = new SimLoop(() => now);
  const single = o.bulkheadBy === false;
  const scheduler = new Scheduler(o.concurrency, o.perRequest, o.maxQueue, {
    ...(single
      ? {
          ...(o.admission ? { admission: new Admission(o.admission) } : {}),
          ...(o.adaptive ? { adaptive: new AdaptiveLimit(o.adaptive, 0) } : {}),
        }
      : { partition: { adaptive: o.adaptive, admission: o.admission } }),
    ...(o.monitor === false ? {} : { loop }),
    now: () => now,
  });
  const lagOf = o.loopLagMs ?? (() => 0);
  let inFlight = 0;
  const relag = (): void => loop.set(now, lagOf(now, inFlight));

  // Each dependency: `serving` calls busy, the rest waiting in order.
  const deps = new Map<string, { o: Dependency; serving: number; waiting: Set<SimTask> }>();
  for (const [name, d] of Object.entries(o.dependencies))
    deps.set(name, { o: d, serving: 0, waiting: new Set() });
  const startCall = (task: SimTask): void => {
    const d = task.dep;
    d.serving++;
    task.inDownstream = 'serving';
    events.push(now + d.o.serviceMs, () => {
      if (task.inDownstream !== 'serving') return;
      task.inDownstream = 'none';
      freeConnection(d);
      // The reply waits for the loop before the task sees it.
      events.push(now + loop.lag, () => task.fulfil());
    });
  };
  const freeConnection = (d: { o: Dependency; serving: number; waiting: Set<SimTask> }): void => {
    d.serving--;
    while (d.serving < d.o.capacity(now) && d.waiting.size > 0) {
      const next = d.waiting.values().next().value!;
      d.waiting.delete(next);
      startCall(next);
    }
  };

  const results: Record<string, RouteResult> = {};
  const latencies: Record<string, number[]> = {};
  const shedLatencies: Record<string, number[]> = {};
  for (const name of Object.keys(o.routes)) {
    results[name] = {
      requests: 0,
      ok: 0,
      okPerS: 0,
      okP99: 0,
      shed: 0,
      shedAtOnce: 0,
      shedP99: 0,
      timedOut: 0,
    };
    latencies[name] = [];
    shedLatencies[name] = [];
  }

  class SimTask implements Job {
    nextJob: Job | null = null;
    prevJob: Job | null = null;
    queued = false;
    startedAt = 0;
    loopAt = 0;
    submittedAt: number;
    deadline: number;
    state: 'queued' | 'running' | 'done' = 'queued';
    inDownstream: 'none' | 'waiting' | 'serving' = 'none';
    readonly bulkhead;
    readonly dep;
    constructor(
      readonly request: SimRequest,
      readonly name: string,
    ) {
      this.submittedAt = now;
      this.deadline = request.deadline;
      const r = request.route;
      this.bulkhead = scheduler.bulkhead(o.bulkheadBy === 'dependency' ? r.dependency : name);
      this.dep = deps.get(r.dependency)!;
    }
    start(): void {
      this.state = 'running';
      if (this.dep.serving < this.dep.o.capacity(now)) startCall(this);
      else {
        this.inDownstream = 'waiting';
        this.dep.waiting.add(this);
      }
    }
    fulfil(): void {
      if (this.state !== 'running') return;
      this.state = 'done';
      scheduler.release(this.request.lane, this);
      this.request.taskDone();
    }
    drop(): void {
      scheduler.cancel(this.request.lane, this);
      this.state = 'done';
      this.request.fail('shed');
    }
    abort(): void {
      if (this.state === 'queued') scheduler.cancel(this.request.lane, this);
      else if (this.state === 'running') {
        if (this.inDownstream === 'waiting') this.dep.waiting.delete(this);
        else if (this.inDownstream === 'serving') freeConnection(this.dep);
        this.inDownstream = 'none';
        this.startedAt = Number.NaN;
        scheduler.release(this.request.lane, this);
      }
      this.state = 'done';
    }
  }

  let laneId = 0;
  class SimRequest {
    readonly lane: Lane;
    readonly arrival = now;
    readonly deadline: number;
    readonly tasks: SimTask[] = [];
    done = 0;
    over = false;
    constructor(
      readonly routeName: string,
      readonly route: Route,
      readonly client: boolean,
    ) {
      this.lane = new Lane(now, laneId++);
      this.deadline = now + route.budgetMs;
    }
    begin(): void {
      inFlight++;
      relag();
      const r = this.route;
      for (let i = 0; i < r.calls; i++) this.tasks.push(new SimTask(this, r.names[i % r.names.length]!));
      // Whole-call admission, per bulkhead (call.ts).
      const need = new Map<object, number>();
      for (const t of this.tasks) need.set(t.bulkhead, (need.get(t.bulkhead) ?? 0) + 1);
      for (const [b, n] of need) {
        if (scheduler.capacity(this.lane, this.deadline, b as never) < n) {
          for (const t of this.tasks) t.state = 'done';
          this.fail('shed');
          return;
        }
      }
      for (const t of this.tasks) {
        if (this.over) break;
        if (scheduler.submit(this.lane, t) === 'shed') {
          t.state = 'done';
          this.fail('shed');
        }
      }
      if (!this.over) events.push(this.deadline, () => this.fail('timeout'));
    }
    taskDone(): void {
      if (this.over || ++this.done < this.route.calls) return;
      this.over = true;
      this.end('ok');
    }
    fail(why: 'shed' | 'timeout'): void {
      if (this.over) return;
      this.over = true;
      scheduler.held(() => {
        for (const t of this.tasks) if (t.state !== 'done') t.abort();
      });
      this.end(why);
    }
    private end(how: 'ok' | 'shed' | 'timeout'): void {
      inFlight--;
      relag();
      const result = results[this.routeName]!;
      if (this.arrival >= o.fromMs) {
        result.requests++;
        if (how === 'ok') {
          result.ok++;
          latencies[this.routeName]!.push(now - this.arrival);
        } else if (how === 'shed') {
          result.shed++;
          if (now === this.arrival) result.shedAtOnce++;
          shedLatencies[this.routeName]!.push(now - this.arrival);
        } else result.timedOut++;
      }
      // A closed-loop client sends its next request once the answer got through the loop (at least 1 ms).
      if (this.client && now < o.durationMs) {
        events.push(now + Math.max(1, loop.lag), () =>
          new SimRequest(this.routeName, this.route, true).begin(),
        );
      }
    }
  }

  for (const [name, r] of Object.entries(o.routes)) {
    if (r.clients !== undefined) {
      for (let c = 0; c < r.clients; c++) events.push(c * 0.01, () => new SimRequest(name, r, true).begin());
      continue;
    }
    const groupsPerS = r.groupsPerS ?? 50;
    const groupMs = 1000 / groupsPerS;
    const perGroup = (r.rate ?? 0) / groupsPerS;
    let owed = 0;
    for (let t = 0; t < o.durationMs; t += groupMs) {
      events.push(t, () => {
        owed += perGroup;
        while (owed >= 1) {
          owed--;
          new SimRequest(name, r, false).begin();
        }
      });
    }
  }
  const limits: Record<string, number[]> = {};
  for (let t = 0; t < o.durationMs; t += 100) {
    events.push(t, () => {
      const deps = scheduler.dependencies();
      if (single) (limits[''] ??= []).push(scheduler.limit);
      for (const [name, d] of Object.entries(deps)) (limits[name] ??= []).push(d.limit);
    });
  }
  let maxT = 0;
  for (const r of Object.values(o.routes)) maxT = Math.max(maxT, r.budgetMs);
  for (let e = events.pop(); e && e.t <= o.durationMs + maxT; e = events.pop()) {
    now = e.t;
    e.run();
  }
  for (const [name, result] of Object.entries(results)) {
    result.okPerS = (result.ok * 1000) / (o.durationMs - o.fromMs);
    result.okP99 = p99(latencies[name]!);
    result.shedP99 = shedLatencies[name]!.length === 0 ? 0 : p99(shedLatencies[name]!);
  }
  return { routes: results, limits };
}
