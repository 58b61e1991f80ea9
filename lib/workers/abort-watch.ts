interface AbortWatch {
  readonly calls: Set<() => void>;
  readonly listener: () => void;
}

/** The calls waiting on each signal: one `abort` listener per signal, however many calls share it. */
const watches = new WeakMap<AbortSignal, AbortWatch>();

/**
 * Calls `onAbort` when `signal` aborts; the returned function stops watching. All the calls made with one
 * signal (a task's `ctx.worker()` in a loop) share a single listener, which is removed with the last call:
 * eleven listeners on one signal would trip Node's MaxListenersExceededWarning, and none outlives its call.
 */
export function watchAbort(signal: AbortSignal, onAbort: () => void): () => void {
  let watch = watches.get(signal);
  if (watch === undefined) {
    const calls = new Set<() => void>();
    const listener = (): void => {
      watches.delete(signal);
      for (const call of [...calls]) call();
    };
    watch = { calls, listener };
    watches.set(signal, watch);
    signal.addEventListener('abort', listener, { once: true });
  }
  const current = watch;
  current.calls.add(onAbort);
  return () => {
    current.calls.delete(onAbort);
    if (current.calls.size === 0 && watches.get(signal) === current) {
      watches.delete(signal);
      signal.removeEventListener('abort', current.listener);
    }
  };
}
