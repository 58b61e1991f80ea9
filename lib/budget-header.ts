const POSITIVE_INTEGER = /^\s*[1-9][0-9]*\s*$/;

/**
 * The client's remaining budget, from the budget header: a positive integer of ms. Anything else (missing,
 * repeated, malformed, zero, negative, fractional) is ignored rather than an error, and never extends the
 * budget: the caller clamps the result to `maxBudgetMs`.
 */
export function parseBudgetHeader(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !POSITIVE_INTEGER.test(value)) return undefined;
  return Number(value);
}

/** What {@link requestBudget} reads of the middleware's options. */
export interface BudgetSettings {
  budgetMs: number;
  maxBudgetMs: number;
  budgetHeader: string | false;
}

/**
 * A request's budget, ms, from the value of its budget header (read once, by the middleware): the route's `budget(ms)` if it set one, else `budgetMs`; a valid budget header replaces
 * it, bounded by `maxBudgetMs` (what a client may ask for over the server's default) or, on a route with its own
 * budget, by that budget (the server's choice, which the client can only shorten).
 */
export function requestBudget(
  header: string | string[] | undefined,
  settings: BudgetSettings,
  routeMs?: number,
): number {
  const asked = settings.budgetHeader ? parseBudgetHeader(header) : undefined;
  if (routeMs !== undefined) return asked === undefined ? routeMs : Math.min(asked, routeMs);
  return asked === undefined ? settings.budgetMs : Math.min(asked, settings.maxBudgetMs);
}
