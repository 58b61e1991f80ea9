import { expressVersions } from '../integration/helpers/express-versions';
import { behaviours, workerBehaviours, type Behaviour, type WorkerBehaviour } from './helpers/behaviours';
import {
  FALLBACK,
  SIBLING,
  forms,
  runGroup,
  sameOrFewer,
  count,
  workerForms,
  type Cell,
  type Form,
  type GroupResult,
  type Observed,
  type TaskStatus,
} from './helpers/matrix';

/**
 * The fault matrix: every task behaviour (resolves, throws, rejects with anything, hostile thenables, never
 * settles, ignores its signal, settles at the deadline) under every call form (all, settle, run, gather,
 * worker; required and with a fallback) and three conditions (nothing else happens, the client leaves while
 * the task runs, the scheduler is full), on Express 5 and 4. The cells of one group run at once on one
 * server; each then asserts its own outcome, and the group asserts what the process kept.
 */
const IN_PROCESS = { budgetMs: 150, graceMs: 60 };
const WORKER = { budgetMs: 400, graceMs: 60 };

function cellsOf(form: Form): Cell[] {
  const list: readonly (Behaviour | WorkerBehaviour)[] = form.worker ? workerBehaviours : behaviours;
  const cells: Cell[] = [];
  for (const behaviour of list) {
    if ('requiredStatus' in behaviour && form.fallback) continue;
    cells.push({
      name: behaviour.key,
      task: taskName(form, behaviour, behaviour.key),
      form,
      condition: 'normal',
      behaviour,
    });
    if (behaviour.slow) {
      const name = `${behaviour.key} (client leaves)`;
      cells.push({ name, task: taskName(form, behaviour, name), form, condition: 'disconnect', behaviour });
    }
  }
  const first = list[0]!;
  cells.push({
    name: 'no slot, no queue',
    task: taskName(form, first, 'shed'),
    form,
    condition: 'shed',
    behaviour: first,
  });
  return cells;
}

/** `req.fanout.worker(method)` names its task after the method. */
const taskName = (form: Form, behaviour: Behaviour | WorkerBehaviour, name: string): string =>
  form.key === 'worker' && 'call' in behaviour ? behaviour.call(0)[0] : name;

const groups: Array<[string, Form, Cell[]]> = [];
for (const [version] of expressVersions) {
  for (const form of [...forms, ...workerForms]) groups.push([version, form, cellsOf(form)]);
}
const total = groups.reduce((n, [, , cells]) => n + cells.length, 0);
let run = 0;

afterAll(() => {
  console.log(`fault matrix: ${run} of ${total} cells run (${groups.length} groups: form x Express major)`);
});

/** The status the response must have, given how the cell's tasks ended. */
function expectedStatus(cell: Cell, task: TaskStatus, sibling: TaskStatus | undefined): number {
  if (cell.condition === 'disconnect') return 499;
  if (cell.form.mode === 'settle') return 200;
  const required: TaskStatus[] = [];
  if (!cell.form.fallback) required.push(task);
  if (sibling !== undefined) required.push(sibling);
  const failed = required.filter((s) => s !== 'fulfilled');
  if (failed.length === 0) return 200;
  const cause = failed.find((s) => s !== 'aborted') ?? 'aborted';
  if (cause === 'rejected' && 'requiredStatus' in cell.behaviour && cell.behaviour.requiredStatus) {
    return cell.behaviour.requiredStatus;
  }
  return { rejected: 502, timeout: 504, shed: 503, aborted: 499, fulfilled: 200, skipped: 504 }[cause];
}

/**
 * The statuses the faulty task may end with in this cell. A task that settles after the deadline may still win
 * when the event loop was stalled past both (its settlement is then processed before the deadline's timer):
 * either way there is one outcome, and the response follows it. deadline-race.test.ts pins the order on a
 * mocked clock.
 */
function allowedStatuses(cell: Cell): readonly TaskStatus[] {
  if (cell.condition === 'shed') return ['shed'];
  if (cell.condition === 'disconnect') return ['aborted'];
  return [...cell.behaviour.normal, ...(cell.behaviour.late ? [cell.behaviour.late] : [])];
}

function allowedSiblingStatuses(cell: Cell, task: TaskStatus): readonly TaskStatus[] {
  if (cell.form.after) return dependentStatuses(cell, task);
  if (cell.condition === 'shed') return ['shed'];
  if (cell.form.mode === 'settle')
    return cell.condition === 'disconnect' ? ['fulfilled', 'aborted'] : ['fulfilled'];
  if (cell.condition === 'disconnect' || (!cell.form.fallback && task !== 'fulfilled'))
    return ['fulfilled', 'aborted'];
  return ['fulfilled'];
}

/**
 * A sibling that waits for the faulty task: it runs once that task has a value (its own or its fallback's),
 * unless the deadline passes first; otherwise it ends with the call (aborted by fail-fast, timed out at the
 * deadline, aborted when the client leaves) or, in settle(), is rejected unrun.
 */
function dependentStatuses(cell: Cell, task: TaskStatus): readonly TaskStatus[] {
  const { mode, fallback } = cell.form;
  if (cell.condition === 'shed') return mode === 'settle' ? ['rejected'] : ['shed'];
  if (cell.condition === 'disconnect') return ['aborted'];
  if (task === 'fulfilled' || fallback) return task === 'timeout' ? ['timeout'] : ['fulfilled', 'timeout'];
  if (task === 'timeout') return ['timeout'];
  return mode === 'settle' ? ['rejected'] : ['aborted'];
}

/** The body of a 200, as the form answers it. */
function expectedBody(cell: Cell, task: TaskStatus, sibling: TaskStatus | undefined): unknown {
  const value = task === 'fulfilled' ? cell.behaviour.value : FALLBACK;
  if (cell.form.mode === 'settle') {
    const settled = cell.form.fallback || task === 'fulfilled' ? { status: task, value } : { status: task };
    return {
      value: {
        [cell.task]: expect.objectContaining(settled),
        [SIBLING]: expect.objectContaining(
          sibling === 'fulfilled' ? { status: sibling, value: 'ok' } : { status: sibling },
        ),
      },
    };
  }
  if (cell.form.answer === 'one') return { value };
  const values: Record<string, unknown> = { [cell.task]: value };
  if (cell.form.sibling) values[SIBLING] = 'ok';
  return cell.form.answer === 'gather' ? values : { value: values };
}

describe.each(groups.map(([v, f, c]) => [v, f.key, f, c] as const))(
  'fault matrix (%s): %s',
  (_version, _key, form, cells) => {
    const express = expressVersions.find(([v]) => v === _version)![1];
    let result: GroupResult;

    beforeAll(async () => {
      result = await runGroup(express, cells, form.worker ? WORKER : IN_PROCESS);
    }, 30000);

    it.each(cells.map((cell) => [cell.name, cell] as const))('%s', (_name, cell) => {
      run++;
      const seen: Observed = result.cells.get(cell.name)!;
      const budget = form.worker ? WORKER.budgetMs : IN_PROCESS.budgetMs;
      const mine = seen.events.filter((e) => e.name !== 'holder' && e.name !== 'holder2');
      const expectedNames = form.sibling ? [cell.task, SIBLING].sort() : [cell.task];

      // Exactly one outcome per task.
      expect(mine.map((e) => e.name).sort()).toEqual(expectedNames);
      const task = mine.find((e) => e.name === cell.task)!.status;
      const sibling = mine.find((e) => e.name === SIBLING)?.status;
      // A handler that starts with less than half its budget left (a machine too busy to run it) may see any of
      // its tasks time out; the rest of the cell's assertions hold all the same.
      const starved = seen.startRemaining < budget / 2;
      const extra: TaskStatus[] = starved ? ['timeout', 'aborted'] : [];
      expect([...allowedStatuses(cell), ...extra]).toContain(task);
      if (form.sibling) expect([...allowedSiblingStatuses(cell, task), ...extra]).toContain(sibling);

      // Exactly one response, with the documented status.
      const status = expectedStatus(cell, task, sibling);
      if (cell.condition === 'disconnect') {
        expect(seen.status).toBeUndefined();
        // Nobody reads an answer: none is written, or one 499 into the void; never another status, never two.
        expect(seen.writeHeads.length).toBeLessThanOrEqual(1);
        expect(seen.errors.length).toBeLessThanOrEqual(1);
        const statuses = [...seen.writeHeads, ...seen.errors.map((e) => (e as { status?: number }).status)];
        expect(statuses.filter((s) => s !== 499)).toEqual([]);
        // all(), settle(), run() and worker() reject with ClientClosedError; gather() alone keeps it to itself.
        if (form.answer !== 'gather') expect(seen.errors).toHaveLength(1);
      } else {
        expect({ status: seen.status, writeHeads: seen.writeHeads, clientError: seen.clientError }).toEqual({
          status,
          writeHeads: [status],
          clientError: undefined,
        });
        expect(seen.errors.map((e) => (e as { status?: number }).status)).toEqual(
          status === 200 ? [] : [status],
        );
        if (status === 200) expect(seen.body).toEqual(expectedBody(cell, task, sibling));
        if (status === 503) expect(seen.headers['retry-after']).toBe('1');
        // By the budget and an allowance for a small, shared machine: the precise bound is invariants.test.ts's.
        expect(seen.serverMs[0]).toBeLessThan(budget + 500);
      }

      // Nothing left behind: no slot, no queued entry, no busy thread, no listener, no unhandled rejection.
      expect(seen.stats).toMatchObject({ running: 0, queued: 0, workers: { busy: 0, pending: 0 } });
      expect(seen.listeners.every((n) => n === 0)).toBe(true);
      expect(seen.unhandled).toEqual([]);
    });

    it('leaves no timer, handle, thread, unhandled rejection or warning in the process', () => {
      expect({
        unhandled: result.unhandled.map(String),
        warnings: result.warnings,
        pendingTimers: result.pendingTimers,
        resourcesBack: sameOrFewer(count(result.resourcesAfter), count(result.resourcesBefore)),
      }).toEqual({ unhandled: [], warnings: [], pendingTimers: 0, resourcesBack: true });
    });
  },
);
