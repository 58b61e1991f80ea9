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
