import type { Logger } from "pino";
import type { ChangeFeed, Origin, Topic } from "./index.ts";

export interface LocalChangeFeed extends ChangeFeed {
  /** Applies a change to the subscribers here, saying where it was made (a Redis feed delivers other nodes' changes so). */
  deliver<E>(topic: Topic<E>, event: E, origin: Origin): Promise<void>;
  onResync(resync: () => unknown): () => void;
  /**
   * Asks every view to apply its stored changes again, and settles once they
   * all did: a node that started from its snapshot catches up so when
   * InfluxDB is back. Answers how many views failed to.
   */
  resync(): Promise<number>;
}

/**
 * The in-process feed: `publish` applies the event to every subscriber before
 * it resolves, so a change made here is visible in every view when the call
 * that made it answers. A subscriber that throws is logged and does not stop
 * the others.
 */
export function localChangeFeed(log: Logger): LocalChangeFeed {
  const subscribers = new Map<string, Set<(event: unknown, origin: Origin) => void>>();
  const resyncs = new Set<() => unknown>();
  const feed: LocalChangeFeed = {
    publish: <E>(topic: Topic<E>, event: E) => feed.deliver(topic, event, "here"),
    deliver<E>(topic: Topic<E>, event: E, origin: Origin) {
      // Parsed as a Redis feed would parse it, so an event that could not cross nodes fails here too.
      const parsed = topic.schema.safeParse(event);
      if (!parsed.success)
        return Promise.reject(new TypeError(`not a '${topic.name}' change: ${parsed.error.message}`));
      for (const apply of subscribers.get(topic.name) ?? []) {
        try {
          apply(parsed.data, origin);
        } catch (err) {
          log.error(
            { part: "changes", topic: topic.name, event: topic.identity(parsed.data), err: (err as Error).message },
            "a view failed to apply a change",
          );
        }
      }
      return Promise.resolve();
    },
    subscribe<E>(topic: Topic<E>, apply: (event: E, origin: Origin) => void) {
      const set = subscribers.get(topic.name) ?? new Set();
      subscribers.set(topic.name, set);
      const listener = apply as (event: unknown, origin: Origin) => void;
      set.add(listener);
      return () => set.delete(listener);
    },
    onResync(resync) {
      resyncs.add(resync);
      return () => resyncs.delete(resync);
    },
    async resync() {
      const settled = await Promise.allSettled([...resyncs].map(async (resync) => resync()));
      return settled.filter((s) => s.status === "rejected").length;
    },
    close() {
      subscribers.clear();
      resyncs.clear();
      return Promise.resolve();
    },
  };
  return feed;
}
