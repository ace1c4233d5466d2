import type { Logger } from "pino";
import type { ChangeFeed, Origin, Topic } from "./index.ts";

export interface Follow<E> {
  feed: ChangeFeed;
  topic: Topic<E>;
  log: Logger;
  /** The stored changes, oldest first (a part's own measurement). */
  rows(): Promise<readonly Record<string, unknown>[]>;
  /** A row as the event it recorded; the topic's schema decides whether it is one. */
  toEvent(row: Record<string, unknown>): unknown;
  /** The view's `apply`; it answers true when the event was new to it. */
  apply(event: E): boolean;
  /** Called after `apply` took in a new event from the feed (not during the rebuild), for parts that act on it. */
  changed?(event: E, origin: Origin): void;
}

/**
 * Brings a view up to date and keeps it there: it subscribes first and then
 * applies the stored changes, so a change that arrives during the rebuild is
 * not lost (the view is idempotent and order-tolerant, so meeting it twice, or
 * before older ones, is harmless). Returns a function that stops following.
 */
export async function rebuildAndFollow<E>(follow: Follow<E>): Promise<{ stop: () => void; events: number }> {
  const stop = follow.feed.subscribe(follow.topic, (event, origin) => {
    if (follow.apply(event)) follow.changed?.(event, origin);
  });
  const replay = async (resync: boolean) => {
    let events = 0;
    let skipped = 0;
    for (const row of await follow.rows()) {
      const parsed = follow.topic.schema.safeParse(follow.toEvent(row));
      if (!parsed.success) {
        skipped++;
        continue;
      }
      // A resync takes in what the feed lost; parts act on those changes as on any new one.
      if (follow.apply(parsed.data) && resync) follow.changed?.(parsed.data, "elsewhere");
      events++;
    }
    if (skipped > 0)
      follow.log.warn({ topic: follow.topic.name, skipped }, "stored changes that are not valid events were skipped");
    return events;
  };
  let events: number;
  try {
    events = await replay(false);
  } catch (err) {
    stop();
    throw err;
  }
  const stopResync = follow.feed.onResync?.(() =>
    replay(true).then(
      () => undefined,
      (err: Error) => {
        follow.log.error({ topic: follow.topic.name, err: err.message }, "a view could not resync from InfluxDB");
        throw err;
      },
    ),
  );
  return {
    stop: () => {
      stop();
      stopResync?.();
    },
    events,
  };
}
