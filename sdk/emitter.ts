/** A small typed event emitter: node:events is not in browsers, and the SDK runs in both. */
export class Emitter<Events extends Record<string, unknown[]>> {
  private readonly listeners = new Map<keyof Events, Set<(...args: unknown[]) => void>>();

  on<K extends keyof Events>(event: K, listener: (...args: Events[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as unknown as (...args: unknown[]) => void);
    return () => set.delete(listener as unknown as (...args: unknown[]) => void);
  }

  protected emit<K extends keyof Events>(event: K, ...args: Events[K]): void {
    for (const listener of this.listeners.get(event) ?? []) {
      try {
        listener(...args);
      } catch (err) {
        // A listener's bug must not break the connection's bookkeeping; it surfaces as an uncaught error.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
