/**
 * Counts timers created through the global `setTimeout`/`setInterval` that are still pending (neither fired
 * nor cleared), unref'd ones included, which `process.getActiveResourcesInfo()` does not show.
 */
export function trackTimers(): { pending(): number; restore(): void } {
  const live = new Set<NodeJS.Timeout>();
  const byId = new Map<number, NodeJS.Timeout>();
  const g = globalThis as unknown as Record<string, unknown>;
  const original = {
    setTimeout: globalThis.setTimeout,
    clearTimeout: globalThis.clearTimeout,
    setInterval: globalThis.setInterval,
    clearInterval: globalThis.clearInterval,
  };
  const forget = (handle: unknown) => {
    const timer = typeof handle === 'number' ? byId.get(handle) : (handle as NodeJS.Timeout);
    if (timer === undefined) return;
    live.delete(timer);
    byId.delete(Number(timer));
  };
  const remember = (timer: NodeJS.Timeout) => {
    live.add(timer);
    byId.set(Number(timer), timer);
    return timer;
  };
  g.setTimeout = Object.assign((fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const timer: NodeJS.Timeout = original.setTimeout(
      (...a: unknown[]) => {
        forget(timer);
        fn(...a);
      },
      ms,
      ...args,
    );
    return remember(timer);
  }, original.setTimeout);
  g.clearTimeout = (handle: unknown) => {
    forget(handle);
    original.clearTimeout(handle as NodeJS.Timeout);
  };
  g.setInterval = Object.assign(
    (fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) =>
      remember(original.setInterval(fn, ms, ...args)),
    original.setInterval,
  );
  g.clearInterval = (handle: unknown) => {
    forget(handle);
    original.clearInterval(handle as NodeJS.Timeout);
  };
  return {
    pending: () => live.size,
    restore: () => Object.assign(g, original),
  };
}

/** Active (ref'd) timers of the process, as `process.getActiveResourcesInfo()` reports them. */
export const activeTimeouts = (): number =>
  process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
