// A deterministic discrete-event simulation of the bench's overload case, no real time: the real Scheduler,
// Admission and AdaptiveLimit on a fake clock, in front of a downstream that serves `capacity` calls at once
// (`serviceMs` each) and queues the rest in arrival order. Requests arrive in groups (as autocannon's paced
// connections send them), each fans out `calls` tasks with `all()` semantics: whole-call admission, fail-fast
// (a dropped or failed task aborts its siblings, freeing their slots and downstream connections), a deadline.
import { AdaptiveLimit, type AdaptiveLimitSettings } from '../../lib/adaptive-limit';
import { Admission, type AdmissionSettings } from '../../lib/admission';
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
