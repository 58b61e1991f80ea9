/**
 * A retry (or hedge) budget shaped like Finagle's `RetryBudget`: every first attempt deposits `ratio` of a
 * token, every retry withdraws one, both counted over the last `windowMs`; on top of that a reserve of
 * `minPerSecond` × the window's seconds, available from the first request (a service that has just started,
 * or has little traffic, may still retry a little). So a failing dependency sees at most about
 * `1 + ratio` times its normal call rate (plus the reserve), never `1 + retries` times.
 *
 * No clock of its own and no timer: the caller passes the time (performance ms), so it is deterministic under a
 * fake clock. The window is kept as ten slots, each a tenth of it long; a slot's counts expire together.
 */
export interface BudgetSettings {
  /** Tokens deposited per first attempt, from 0 to 1000 (0.2: one retry per five first attempts). */
  ratio: number;
  /** The reserve: retries a second allowed whatever the deposits. */
  minPerSecond: number;
  /** How long deposits and withdrawals are remembered, ms. */
  windowMs: number;
}

const SLOTS = 10;

export class TokenBucket {
  private readonly deposits = new Float64Array(SLOTS);
  private readonly withdrawals = new Float64Array(SLOTS);
  private deposited = 0;
  private withdrawn = 0;
  private index = 0;
  private slotEnd: number;
  private readonly slotMs: number;
  private readonly reserve: number;

  constructor(
    readonly settings: BudgetSettings,
    now: number,
  ) {
    this.slotMs = settings.windowMs / SLOTS;
    this.slotEnd = now + this.slotMs;
    this.reserve = (settings.minPerSecond * settings.windowMs) / 1000;
  }

  /** A first attempt: `ratio` more tokens for the next `windowMs`. */
  deposit(now: number): void {
    this.roll(now);
    this.deposits[this.index]! += 1;
    this.deposited += 1;
  }

  /** Tokens available now. */
  balance(now: number): number {
    this.roll(now);
    return this.reserve + this.settings.ratio * this.deposited - this.withdrawn;
  }

  /** Takes a token if one is available; false (and nothing taken) otherwise. */
  tryWithdraw(now: number): boolean {
    if (this.balance(now) < 1) return false;
    this.withdrawals[this.index]! += 1;
    this.withdrawn += 1;
    return true;
  }

  /** Expires the slots that ended before `now`. */
  private roll(now: number): void {
    if (now < this.slotEnd) return;
    const passed = Math.floor((now - this.slotEnd) / this.slotMs) + 1;
    const steps = Math.min(passed, SLOTS);
    for (let i = 0; i < steps; i++) {
      this.index = this.index + 1 === SLOTS ? 0 : this.index + 1;
      this.deposited -= this.deposits[this.index]!;
      this.withdrawn -= this.withdrawals[this.index]!;
      this.deposits[this.index] = 0;
      this.withdrawals[this.index] = 0;
    }
    this.slotEnd += passed * this.slotMs;
  }
}
