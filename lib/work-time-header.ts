import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import onHeaders from 'on-headers';

/**
 * The callee's side of the learned transit (transit.ts): how long this service worked on a request, in a
 * response header that a caller reads through any proxy that keeps headers, with `Server-Timing` on or off.
 */

/**
 * The work time in integer ms (rounded down), from when the middleware saw the request to when the response
 * headers went out. Only a duration: it says nothing about the tasks, the data or the host, and it is written
 * only on answers to requests that carried the budget header (a caller that propagates its deadline).
 */
export const WORK_HEADER = 'x-fanout-work-ms';

/**
 * Writes {@link WORK_HEADER} on `res`, for a request that carried the budget header (the middleware checks);
 * `arrival` is `performance.now()` ms.
 */
export function reportWork(res: ServerResponse, arrival: number): void {
  if (res.headersSent) return;
  onHeaders(res, () => {
    res.setHeader(WORK_HEADER, String(Math.floor(performance.now() - arrival)));
  });
}

/**
 * The work time a callee reported on its answer, ms: its {@link WORK_HEADER}, else the `dur` of its
 * `Server-Timing` `total` entry (written by express-fanout when `serverTiming` is on, and by other servers);
 * undefined when neither is there and well-formed.
 */
export function reportedWorkMs(headers: Headers): number | undefined {
  const own = headers.get(WORK_HEADER);
  if (own !== null && /^\s*\d{1,9}\s*$/.test(own)) return Number(own);
  const timing = headers.get('server-timing');
  if (timing === null) return undefined;
  const total = TOTAL.exec(timing);
  return total ? Number(total[1]) : undefined;
}

/** A `total` entry with a `dur` (`…, total;dur=301.5` or `total;desc="x";dur=301`). */
const TOTAL = /(?:^|,)\s*total\s*;(?:[^,]*?;)?\s*dur\s*=\s*"?(\d{1,9}(?:\.\d+)?)"?\s*(?:[;,]|$)/;
