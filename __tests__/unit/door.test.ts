import { EventEmitter } from 'node:events';
import { IncomingMessage } from 'node:http';
import { DOOR_DEFAULTS, Door, resolveDoor } from '../../lib/door';
import { OverloadedError } from '../../lib/errors';
import { fanout } from '../../lib/index';
import { ManualLoopMonitor } from '../../lib/loop-monitor';
import type { Fanout } from '../../lib/types';

/** What one simulated run gives. */
interface SimResult {
  served: number;
  shed: number;
  /** Latencies of served requests, ms, sorted. */
  latencies: number[];
  /** When each shed happened, ms. */
  shedAt: number[];
  judged: boolean;
  door: Door;
}

interface SimOptions {
  ms: number;
  /** Requests the loop completes per ms (its capacity: 1 / the loop time a request needs). */
  capacityPerMs: number;
  /** Time a request spends off the loop (IO) before it needs the loop, ms. */
  ioMs: number | ((t: number) => number);
  budgetMs: number;
  /** Open loop: arrivals per ms at time t. */
  arrivalsPerMs?: (t: number) => number;
  /** Closed loop: this many clients, each sending again as soon as it has an answer (a 503 too). */
  clients?: number;
  /** The process is descheduled from `from` to `to` ms: nothing runs, and then the loop is that late. */
  stall?: { from: number; to: number };
}

/**
 * A fake-clock model of a process whose event loop serves requests one after another (FIFO, at
 * `capacityPerMs`) after each spent `ioMs` off the loop; the loop's delay is the work queued on it (smoothed
 * like the real monitor's), its utilisation 1 while work waits. A shed costs 1/20 of a request's loop time.
 */
function simulate(o: SimOptions): SimResult {
  const monitor = new ManualLoopMonitor();
  const door = new Door(DOOR_DEFAULTS, monitor, 0);
  const io: { at: number; arrived: number }[] = [];
  const loopQueue: number[] = [];
  const latencies: number[] = [];
  const shedAt: number[] = [];
  let served = 0;
  let shed = 0;
  let credit = 0;
  let arrivalCredit = 0;
  let waitingClients = o.clients ?? 0;
  let judged = false;
  const ioMs = typeof o.ioMs === 'number' ? () => o.ioMs as number : o.ioMs;
  for (let t = 0; t < o.ms; t++) {
    if (o.stall && t >= o.stall.from && t < o.stall.to) {
      monitor.recentDelay = t - o.stall.from; // a stall in progress
      continue;
    }
    let arrivals = waitingClients;
    waitingClients = 0;
    if (o.arrivalsPerMs) {
      arrivalCredit += o.arrivalsPerMs(t);
      arrivals += Math.floor(arrivalCredit);
      arrivalCredit -= Math.floor(arrivalCredit);
    }
    let loopWork = 0;
    for (let i = 0; i < arrivals; i++) {
      const judging = door.judging(t);
      if (judging) judged = true;
      const expected = judging ? door.judge(t, o.budgetMs) : Number.NaN;
      if (expected === expected) {
        shed++;
        shedAt.push(t);
        loopWork += 1 / 20;
        if (o.clients) waitingClients++;
        continue;
      }
      door.entered(t);
      io.push({ at: t + ioMs(t), arrived: t });
    }
    while (io.length > 0 && io[0]!.at <= t) loopQueue.push(io.shift()!.arrived);
    credit += o.capacityPerMs - loopWork;
    while (credit >= 1 && loopQueue.length > 0) {
      credit--;
      const arrived = loopQueue.shift()!;
      door.left(t, arrived);
      latencies.push(t - arrived);
      served++;
      if (o.clients) waitingClients++;
    }
    if (loopQueue.length === 0) credit = Math.min(credit, 1);
    const queuedMs = loopQueue.length / o.capacityPerMs;
    monitor.recentDelay += (1 - Math.exp(-1 / 100)) * (queuedMs - monitor.recentDelay);
    monitor.util = loopQueue.length > 0 ? 1 : 0.5;
  }
  latencies.sort((a, b) => a - b);
  return { served, shed, latencies, shedAt, judged, door };
}

const p99 = (sorted: number[]) => sorted[Math.floor(sorted.length * 0.99)] ?? 0;

describe('the door (fake clock, simulated loop)', () => {
  it.each([200, 1000])(
    'never sheds a closed-loop surge of %i clients on a healthy downstream, though the loop is hot and busy',
    (clients) => {
      // 5 requests a ms of loop capacity, 20 ms of IO each, budget 1000 ms: 1000 clients wait ~200 ms each.
      const r = simulate({ ms: 5000, capacityPerMs: 5, ioMs: 20, budgetMs: 1000, clients });
      expect(r.judged).toBe(true);
      expect(r.shed).toBe(0);
      expect(r.served / 5000).toBeGreaterThan(0.95 * 5);
      expect(r.door.stats(5000).shedding).toBe(false);
    },
  );

  it('never sheds a closed-loop surge that the machine stalls for longer than the budget: late, but not piling up', () => {
    const r = simulate({
      ms: 6000,
      capacityPerMs: 1,
      ioMs: 20,
      budgetMs: 1000,
      clients: 400,
      stall: { from: 2000, to: 3500 },
    });
    expect(r.judged).toBe(true);
    expect(r.shed).toBe(0);
  });

  it('sheds an open-loop overload of the loop at 3x its capacity, keeping its capacity and the budget', () => {
    // 4 ms of loop time per request after 10 ms of IO: 0.25 a ms; 0.75 a ms arrive; budget 250 ms.
    const r = simulate({
      ms: 10_000,
      capacityPerMs: 0.25,
      ioMs: 10,
      budgetMs: 250,
      arrivalsPerMs: () => 0.75,
    });
    expect(r.shed).toBeGreaterThan(0);
    expect(r.served / 10_000).toBeGreaterThan(0.8 * 0.25);
    expect(p99(r.latencies)).toBeLessThanOrEqual(250);
    expect(r.door.stats(10_000)).toMatchObject({ shedding: true, shed: r.shed });
  });

  it('sheds while the loop is slow for a while, then reopens with hysteresis once it is not', () => {
    // Healthy (half the capacity) for 2 s, 3x overloaded for 3 s, healthy again for 3 s.
    const rate = (t: number) => (t >= 2000 && t < 5000 ? 0.75 : 0.125);
    const r = simulate({ ms: 8000, capacityPerMs: 0.25, ioMs: 10, budgetMs: 250, arrivalsPerMs: rate });
    const windows = (from: number, to: number) => r.shedAt.filter((t) => t >= from && t < to).length;
    expect(windows(0, 2000)).toBe(0);
    // Not at the first late timer: the loop must stay hot for the interval, and the budget must be broken.
    expect(windows(2000, 2050)).toBe(0);
    expect(windows(2000, 5000)).toBeGreaterThan(0);
    // The queue the overload left drains in well under a budget; then the door lets everyone in again.
    expect(windows(5500, 8000)).toBe(0);
    expect(r.door.stats(8000).shedding).toBe(false);
    expect(r.door.judging(8000)).toBe(false);
  });

  it('sheds nothing for a slow dependency: many requests in flight, but the loop is not the queue', () => {
    const r = simulate({ ms: 5000, capacityPerMs: 5, ioMs: 900, budgetMs: 1000, arrivalsPerMs: () => 2 });
    expect(r.judged).toBe(false);
    expect(r.shed).toBe(0);
  });
});

describe('the door state machine', () => {
  function hotDoor() {
    const monitor = new ManualLoopMonitor();
    const door = new Door({ targetMs: 10, intervalMs: 100, utilization: 0.9 }, monitor, 0);
    return { monitor, door };
  }

  it('judges only after the delay stayed above the target for the interval (CoDel), not at a fixed threshold', () => {
    const { monitor, door } = hotDoor();
    monitor.util = 1;
    monitor.recentDelay = 11; // 1 ms above the target: the clock starts ~now
    expect(door.judging(0)).toBe(false);
    expect(door.judging(98)).toBe(false);
    monitor.recentDelay = 5; // one calm reading resets it
    expect(door.judging(99)).toBe(false);
    monitor.recentDelay = 11;
    expect(door.judging(150)).toBe(false);
    expect(door.judging(250)).toBe(true);
  });

  it('takes the loop delay for the wait while nothing completed in the last second', () => {
    const { monitor, door } = hotDoor();
    for (let i = 0; i < 12; i++) door.entered(0); // piling up: nothing completes
    monitor.util = 1;
    monitor.recentDelay = 400;
    expect(door.judging(0)).toBe(true);
    expect(door.judge(0, 1000)).toBeNaN();
    expect(door.judge(0, 300)).toBe(400);
  });

  it('sheds nothing while only a few requests came: no pile, whatever the delay', () => {
    const { monitor, door } = hotDoor();
    for (let i = 0; i < 3; i++) door.entered(0);
    monitor.util = 1;
    monitor.recentDelay = 400;
    expect(door.judging(0)).toBe(true);
    expect(door.judge(0, 300)).toBeNaN();
  });

  it('does not shed for the delay alone: a process descheduled for longer than the budget serves again at once', () => {
    const { monitor, door } = hotDoor();
    // 20 requests a bucket, 30 ms each, 5 in flight: a stall of 1.5 s (the machine took the CPU away) ends.
    for (let i = 0; i < 20; i++) door.entered(0);
    for (let i = 0; i < 20; i++) door.left(50, 20);
    for (let i = 0; i < 5; i++) door.entered(140);
    monitor.util = 1;
    monitor.recentDelay = 1500;
    expect(door.judging(150)).toBe(true);
    expect(door.judge(150, 1000)).toBeNaN();
  });

  it('counts a stall in progress as time above the target: a loop late by 500 ms is hot at once', () => {
    const { monitor, door } = hotDoor();
    monitor.util = 0.2; // not measured yet during the stall
    monitor.recentDelay = 500;
    expect(door.judging(1000)).toBe(true);
  });

  it('stays judging until the delay stayed below the target for the interval (hysteresis)', () => {
    const { monitor, door } = hotDoor();
    monitor.util = 1;
    monitor.recentDelay = 50;
    door.judging(0);
    expect(door.judging(100)).toBe(true);
    monitor.recentDelay = 2;
    expect(door.judging(110)).toBe(true);
    expect(door.judging(200)).toBe(true);
    monitor.recentDelay = 30; // a late timer again: the calm period restarts
    expect(door.judging(205)).toBe(true);
    monitor.recentDelay = 2;
    expect(door.judging(210)).toBe(true);
    expect(door.judging(309)).toBe(true);
    expect(door.judging(310)).toBe(false);
  });

  it('does not judge while the loop is not busy, however late its timers (a descheduled process)', () => {
    const { monitor, door } = hotDoor();
    monitor.util = 0.5;
    monitor.recentDelay = 50;
    door.judging(0);
    expect(door.judging(200)).toBe(false);
    monitor.util = 0.95;
    expect(door.judging(201)).toBe(true);
  });

  it('admits what fits: requests in flight below best rate x best latency are never shed (go-zero)', () => {
    const { monitor, door } = hotDoor();
    // 10 requests a bucket, 300 ms each: 0.1 a ms x 300 ms = 30 fit without waiting.
    for (let i = 0; i < 10; i++) door.entered(0);
    for (let i = 0; i < 10; i++) door.left(50, -250);
    for (let i = 0; i < 29; i++) door.entered(0);
    monitor.util = 1;
    monitor.recentDelay = 60;
    door.judging(0);
    expect(door.judging(150)).toBe(true);
    // Expected 300 ms with a 100 ms budget would break it, but nothing waits: admitted.
    expect(door.judge(150, 100)).toBeNaN();
  });

  it('judges a request by its own budget: a shorter one is shed where a longer one is admitted', () => {
    const { monitor, door } = hotDoor();
    for (let i = 0; i < 20; i++) door.entered(0);
    for (let i = 0; i < 20; i++) door.left(50, -50); // 0.2 a ms, 100 ms each
    for (let i = 0; i < 100; i++) door.entered(0); // ~500 ms for the next one
    monitor.util = 1;
    monitor.recentDelay = 150;
    expect(door.judging(150)).toBe(true);
    expect(door.judge(150, 2000)).toBeNaN();
    expect(door.judge(150, 300)).toBeGreaterThan(300);
    expect(door.stats(151)).toEqual({ delayMs: 150, utilization: 1, shedding: true, shed: 1, inFlight: 100 });
  });

  it('answers a shed with a cheap 503: Retry-After, the delay and the budget in the message, no stack', () => {
    const { monitor, door } = hotDoor();
    monitor.recentDelay = 180;
    door.judging(0);
    const error = door.error(412.4, 250);
    expect(error).toBeInstanceOf(OverloadedError);
    expect(error.status).toBe(503);
    expect(error.headers).toEqual({ 'Retry-After': '1' });
    expect(error.message).toBe(
      'The request shed: the event loop is 180 ms behind and the 0 requests in flight would keep this one ' +
        '~412 ms, over its 250 ms budget',
    );
    // No frames captured: a shed costs no stack walk.
    expect(error.stack ?? '').not.toMatch(/\n\s+at /);
  });
});

describe('the door counts each admitted request once, until its response ends', () => {
  class FakeSocket extends EventEmitter {
    destroyed = false;
  }
  class FakeRes extends EventEmitter {
    writableEnded = false;
    destroyed = false;
    headersSent = false;
    constructor(public socket: FakeSocket | null) {
      super();
    }
  }
  const instances: ReturnType<typeof fanout>[] = [];
  afterEach(() => Promise.all(instances.splice(0).map((fo) => fo.close())));
  /** The middleware on a request inheriting from http's, as Express's do; `inFlight` is the door's count. */
  const setup = () => {
    const fo = fanout({ budgetMs: 1000, serverTiming: false });
    instances.push(fo);
    const socket = new FakeSocket();
    const request = () =>
      Object.assign(Object.create(IncomingMessage.prototype) as IncomingMessage, {
        headers: {},
        socket,
        method: 'GET',
        url: '/',
      });
    const enter = (res: FakeRes, req = request()) => {
      const next = jest.fn();
      fo(req as never, res as never, next);
      expect(next).toHaveBeenCalledWith();
      return req;
    };
    return { socket, enter, inFlight: () => fo.stats().eventLoop.inFlight };
  };

  it("leaves at the response's close, once; one 'close' listener a response and one a socket", () => {
    const { socket, enter, inFlight } = setup();
    const responses = [new FakeRes(socket), new FakeRes(socket), new FakeRes(socket)];
    for (const res of responses) enter(res);
    expect(inFlight()).toBe(3);
    for (const res of responses) expect(res.listenerCount('close')).toBe(1);
    expect(socket.listenerCount('close')).toBe(1);
    responses[0]!.emit('close');
    responses[0]!.emit('close');
    expect(inFlight()).toBe(2);
    for (const res of responses) res.emit('close');
    expect(inFlight()).toBe(0);
  });

  it('leaves a pipelined request (no socket yet) when its socket closes first, once', () => {
    const { socket, enter, inFlight } = setup();
    const res = new FakeRes(null);
    enter(res);
    expect(inFlight()).toBe(1);
    socket.emit('close');
    res.emit('close');
    expect(inFlight()).toBe(0);
    expect(socket.listenerCount('close')).toBe(0);
  });

  it('leaves a pipelined request answered in turn at its own close, once', () => {
    const { socket, enter, inFlight } = setup();
    const res = new FakeRes(null);
    enter(res);
    res.emit('close');
    socket.emit('close');
    expect(inFlight()).toBe(0);
  });

  it('does not count a response already over (its close has come and gone), nor a gone client', () => {
    const { socket, enter, inFlight } = setup();
    const ended = new FakeRes(socket);
    ended.writableEnded = true;
    enter(ended);
    const destroyed = new FakeRes(socket);
    destroyed.destroyed = true;
    enter(destroyed);
    expect(inFlight()).toBe(0);
    socket.destroyed = true;
    enter(new FakeRes(socket));
    expect(inFlight()).toBe(0);
  });

  it('a scope the handler used shares the listener, and ends at the close', async () => {
    const { socket, enter, inFlight } = setup();
    const res = new FakeRes(socket);
    const { fanout: scope } = enter(res) as unknown as { fanout: Fanout };
    await expect(scope.all({ a: async () => 1 })).resolves.toEqual({ a: 1 });
    expect(scope.signal.aborted).toBe(false);
    expect(res.listenerCount('close')).toBe(1);
    res.writableEnded = true;
    res.emit('close');
    expect(inFlight()).toBe(0);
    expect(scope.signal.aborted).toBe(true);
  });
});

describe('the eventLoop option', () => {
  it('defaults to on, with targetMs 10, intervalMs 50, utilization 0.9', () => {
    expect(resolveDoor(undefined)).toEqual({ targetMs: 10, intervalMs: 50, utilization: 0.9 });
    expect(resolveDoor({ targetMs: 20 })).toEqual({ targetMs: 20, intervalMs: 50, utilization: 0.9 });
  });

  it('is off with false', () => {
    expect(resolveDoor(false)).toBe(false);
  });

  it('says what it expected and what it got', () => {
    expect(() => resolveDoor(true)).toThrow(
      'Expected `eventLoop` to be an object or `false`, got `true` (boolean)',
    );
    expect(() => resolveDoor({ targetMs: 0 })).toThrow(
      'Expected `eventLoop.targetMs` to be an integer from 1 to 2147483647, got `0` (number)',
    );
    expect(() => resolveDoor({ intervalMs: 1.5 })).toThrow(/`eventLoop.intervalMs` to be an integer/);
    expect(() => resolveDoor({ utilization: 1.5 })).toThrow(
      'Expected `eventLoop.utilization` to be a number from 0 to 1, got `1.5` (number)',
    );
    expect(() => resolveDoor({ utilization: Number.NaN })).toThrow(/`eventLoop.utilization`/);
  });

  it('is validated by fanout() at factory time, with the option named', () => {
    expect(() => fanout({ eventLoop: 'off' as never })).toThrow(
      'Expected `eventLoop` to be an object or `false`, got `off` (string)',
    );
    expect(() => fanout({ eventLoop: { utilisation: 0.5 } as never })).toThrow(
      'Unknown option `eventLoop.utilisation`. Did you mean `eventLoop.utilization`?',
    );
    expect(() => fanout({ eventLop: false } as never)).toThrow('Did you mean `eventLoop`?');
    const fo = fanout({ eventLoop: false });
    void fo.close();
  });

  it('suggests the knob meant when one is misspelt', () => {
    expect(() => resolveDoor({ targetMS: 5 })).toThrow(
      'Unknown option `eventLoop.targetMS`. Did you mean `eventLoop.targetMs`?',
    );
  });
});
