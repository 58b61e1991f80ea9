import { resolveConcurrency, type AdaptiveLimitSettings } from './adaptive-limit';
import { resolveAdmission, type AdmissionSettings } from './admission';
import { resolveDoor, type DoorSettings } from './door';
import { resolveLimits, type ResolvedLimits } from './fleet-limit';
import type { BudgetSettings } from './token-bucket';
import type { BudgetOptions, FanoutOptions, TaskEvent } from './types';
import { describe, integer, isPlainObject, rejectUnknown } from './validate';
import { resolveWorkerOptions, type ResolvedWorkerOptions } from './workers/options';

// The validators moved to validate.ts; re-exported for code that still imports them from here.
export { describe, didYouMean, integer, isPlainObject, MAX_TIMER_MS, rejectUnknown } from './validate';

/** Options after validation, with every default applied. Internal. */
export interface ResolvedOptions {
  budgetMs: number;
  maxBudgetMs: number;
  /** Lower-cased header name, or `false`. */
  budgetHeader: string | false;
  /** The process-wide cap: the fixed limit, or the adaptive limit's `max`. */
  concurrency: number;
  /** The adaptive limit's settings, or `false` for a fixed `concurrency`. */
  adaptive: AdaptiveLimitSettings | false;
  perRequest: number;
  maxQueue: number;
  /** Expected-wait admission and CoDel, or `false` (only `maxQueue` bounds the queue). */
  admission: AdmissionSettings | false;
  /** The process's door (door.ts), or `false`. */
  eventLoop: DoorSettings | false;
  graceMs: number;
  fallbackMs: number;
  /** `false`, or which tasks get an entry (`include` null: all). */
  serverTiming: false | { include: ((name: string) => boolean) | null };
  workers: ResolvedWorkerOptions | false;
  onTask: ((event: TaskEvent) => void) | undefined;
  /** Retries and hedges allowed per task name (token-bucket.ts). */
  retryBudget: BudgetSettings;
  hedgeBudget: BudgetSettings;
  /** Taken off the remaining budget sent downstream: `ms` plus `ratio` of the remaining time. */
  propagationMargin: { ms: number; ratio: number };
  /** Fleet-wide limits by name (fleet-limit.ts). */
  limits: ResolvedLimits;
}

/** The default propagation margin: 5 ms plus 5 % of the remaining time (see README, "Across services"). */
export const PROPAGATION_MARGIN_DEFAULTS = { ms: 5, ratio: 0.05 };

/** Finagle's default retry budget: 20 % of first attempts over 10 s, plus 10 retries a second. */
export const RETRY_BUDGET_DEFAULTS: BudgetSettings = { ratio: 0.2, minPerSecond: 10, windowMs: 10_000 };
/** Hedges: 5 % of first attempts over 10 s, plus 1 a second. */
export const HEDGE_BUDGET_DEFAULTS: BudgetSettings = { ratio: 0.05, minPerSecond: 1, windowMs: 10_000 };

const KNOWN: readonly (keyof FanoutOptions)[] = [
  'budgetMs',
  'maxBudgetMs',
  'budgetHeader',
  'concurrency',
  'perRequest',
  'maxQueue',
  'admission',
  'eventLoop',
  'graceMs',
  'fallbackMs',
  'serverTiming',
  'workers',
  'onTask',
  'retryBudget',
  'hedgeBudget',
  'propagationMarginMs',
  'limits',
];

/** Validates `fanout()`'s options once, at factory time. */
export function resolveOptions(input: unknown): ResolvedOptions {
  if (input === undefined) input = {};
  if (!isPlainObject(input)) {
    throw new TypeError(`Expected the options of \`fanout()\` to be a plain object, got ${describe(input)}`);
  }
  const o = input as FanoutOptions;
  rejectUnknown(o, KNOWN);

  const budgetMs = o.budgetMs === undefined ? 1000 : integer('budgetMs', o.budgetMs, 1);
  const maxBudgetMs = o.maxBudgetMs === undefined ? budgetMs : integer('maxBudgetMs', o.maxBudgetMs, 1);
  if (maxBudgetMs < budgetMs) {
    throw new TypeError(
      `Expected \`maxBudgetMs\` (${maxBudgetMs}) to be at least \`budgetMs\` (${budgetMs}): a client may not get ` +
        'less than the server default by asking for more',
    );
  }

  let budgetHeader: string | false = 'x-request-budget-ms';
  if (o.budgetHeader !== undefined) {
    if (o.budgetHeader === false) budgetHeader = false;
    else if (typeof o.budgetHeader === 'string' && /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(o.budgetHeader)) {
      budgetHeader = o.budgetHeader.toLowerCase();
    } else {
      throw new TypeError(
        `Expected \`budgetHeader\` to be a header name or \`false\`, got ${describe(o.budgetHeader)}`,
      );
    }
  }

  const { concurrency, adaptive } = resolveConcurrency(o.concurrency, 'adaptive');
  const admission = resolveAdmission(o.admission);
  const perRequest =
    o.perRequest === undefined ? 16 : integer('perRequest', o.perRequest, 1, Number.MAX_SAFE_INTEGER);
  const maxQueue =
    o.maxQueue === undefined ? 1024 : integer('maxQueue', o.maxQueue, 0, Number.MAX_SAFE_INTEGER);
  const graceMs = o.graceMs === undefined ? 1000 : integer('graceMs', o.graceMs, 0);
  const fallbackMs = o.fallbackMs === undefined ? 10 : integer('fallbackMs', o.fallbackMs, 0);

  const serverTiming = resolveServerTiming(o.serverTiming);

  if (o.onTask !== undefined && typeof o.onTask !== 'function') {
    throw new TypeError(`Expected \`onTask\` to be a function, got ${describe(o.onTask)}`);
  }

  return {
    retryBudget: resolveBudget('retryBudget', o.retryBudget, RETRY_BUDGET_DEFAULTS),
    hedgeBudget: resolveBudget('hedgeBudget', o.hedgeBudget, HEDGE_BUDGET_DEFAULTS),
    propagationMargin: resolveMargin(o.propagationMarginMs),
    limits: resolveLimits(o.limits),
    budgetMs,
    maxBudgetMs,
    budgetHeader,
    concurrency,
    adaptive,
    perRequest,
    maxQueue,
    admission,
    eventLoop: resolveDoor(o.eventLoop),
    graceMs,
    fallbackMs,
    serverTiming,
    workers: resolveWorkerOptions(o.workers),
    onTask: o.onTask,
  };
}

/** `serverTiming`: a boolean, or `{ include? }` (which enables it whatever `NODE_ENV`). */
function resolveServerTiming(value: unknown): ResolvedOptions['serverTiming'] {
  if (value === undefined) return process.env.NODE_ENV === 'production' ? false : { include: null };
  if (typeof value === 'boolean') return value ? { include: null } : false;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(
      `Expected \`serverTiming\` to be a boolean or \`{ include? }\`, got ${describe(value)}`,
    );
  }
  rejectUnknown(value, ['include'], 'serverTiming.');
  const { include } = value as { include?: unknown };
  if (include !== undefined && typeof include !== 'function') {
    throw new TypeError(`Expected \`serverTiming.include\` to be a function, got ${describe(include)}`);
  }
  return { include: (include as ((name: string) => boolean) | undefined) ?? null };
}

const MARGIN_KEYS = ['ms', 'ratio'];

/** `propagationMarginMs`: fixed ms (`20`), or `{ ms?, ratio? }` (a share of the remaining time on top). */
function resolveMargin(value: FanoutOptions['propagationMarginMs']): { ms: number; ratio: number } {
  if (value === undefined) return PROPAGATION_MARGIN_DEFAULTS;
  if (typeof value === 'number') return { ms: integer('propagationMarginMs', value, 0), ratio: 0 };
  if (!isPlainObject(value)) {
    throw new TypeError(
      `Expected \`propagationMarginMs\` to be an integer >= 0 or \`{ ms?, ratio? }\`, got ${describe(value)}`,
    );
  }
  rejectUnknown(value, MARGIN_KEYS, 'propagationMarginMs.');
  const ms = value.ms === undefined ? 0 : integer('propagationMarginMs.ms', value.ms, 0);
  const ratio = value.ratio ?? 0;
  if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio < 0 || ratio >= 1) {
    throw new TypeError(
      `Expected \`propagationMarginMs.ratio\` to be a number from 0 to below 1, got ${describe(ratio)}`,
    );
  }
  return { ms, ratio };
}

const BUDGET_KEYS = ['ratio', 'minPerSecond', 'windowMs'];

/** `retryBudget` / `hedgeBudget`: `{ ratio?, minPerSecond?, windowMs? }`, each field defaulting on its own. */
function resolveBudget(
  name: string,
  value: BudgetOptions | undefined,
  defaults: BudgetSettings,
): BudgetSettings {
  if (value === undefined) return defaults;
  if (!isPlainObject(value)) {
    throw new TypeError(
      `Expected \`${name}\` to be an object \`{ ratio?, minPerSecond?, windowMs? }\`, got ${describe(value)}`,
    );
  }
  rejectUnknown(value, BUDGET_KEYS, `${name}.`);
  const number = (key: string, v: unknown, max: number): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max) {
      throw new TypeError(`Expected \`${name}.${key}\` to be a number from 0 to ${max}, got ${describe(v)}`);
    }
    return v;
  };
  return {
    ratio: value.ratio === undefined ? defaults.ratio : number('ratio', value.ratio, 1000),
    minPerSecond:
      value.minPerSecond === undefined
        ? defaults.minPerSecond
        : number('minPerSecond', value.minPerSecond, 1e6),
    windowMs:
      value.windowMs === undefined
        ? defaults.windowMs
        : integer(`${name}.windowMs`, value.windowMs, 10, 3_600_000),
  };
}
