import type { Bulkhead, Job, Lane } from '../../../lib/scheduler';

/** A scheduler job that records when it starts (in `log`, by `label`); the test releases it by hand. */
export class TestJob implements Job {
  nextJob: Job | null = null;
  prevJob: Job | null = null;
  queued = false;
  started = false;
  constructor(
    readonly lane: Lane,
    readonly label: string,
    private readonly log: string[],
    /** Its dependency's bulkhead; none: the scheduler's default one. */
    readonly bulkhead?: Bulkhead,
  ) {}
  start(): void {
    this.started = true;
    this.log.push(this.label);
  }
}
