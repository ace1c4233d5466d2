import type { z } from "zod";

/**
 * The one way "a change happened" reaches a view, whether the change was made
 * by this process or arrives from another node. A part names its changes as a
 * topic (a zod schema and the change's identity); its view is rebuilt at start
 * by applying the stored changes and then follows the feed through the same
 * `apply`. The local feed delivers in process; cluster mode adds a Redis one
 * behind this same interface, which is why events are parsed with the topic's
 * schema wherever they come from.
 */
export interface Topic<E> {
  /** e.g. "registry": one topic per part's kind of change. */
  readonly name: string;
  readonly schema: z.ZodType<E>;
  /** The same change has the same identity on every node; applying it twice changes nothing. */
  identity(event: E): string;
}

/** A view: state that changes only through `apply`. Applying an event it has seen is a no-op. */
export interface View<E> {
  apply(event: E): void;
}

/**
 * Where a change was made: every node's views apply every change, but what a
 * change sets off beyond the views (a retained state to publish, a pending
 * action to withdraw) is done once, by the node that made it.
 */
export type Origin = "here" | "elsewhere";

export interface ChangeFeed {
  /**
   * Delivers the event to every subscriber of its topic (here and, in cluster
   * mode, on other nodes). Resolves once this node's subscribers have applied
   * it: a command answers from its view right after publishing its change, so
   * a Redis feed must deliver locally before it resolves too. Rejects an event
   * the topic's schema does not take.
   */
  publish<E>(topic: Topic<E>, event: E): Promise<void>;
  /**
   * `apply` is called for every event published after this call, with where
   * the change was made; returns a function that stops it.
   */
  subscribe<E>(topic: Topic<E>, apply: (event: E, origin: Origin) => void): () => void;
  /**
   * Called when the feed cannot vouch that every change reached this node
   * (a Redis stream trimmed past its position, or a single node that started
   * from its snapshot while InfluxDB was down and reaches it again): views
   * apply their stored changes again. A resync may answer a promise that
   * settles once its view has caught up.
   */
  onResync?(resync: () => unknown): () => void;
  /** The other nodes alive now (a cluster's feed); a single node has none. */
  peers?(): Promise<string[]>;
  close(): Promise<void>;
}

export const topic = <E>(name: string, schema: z.ZodType<E>, identity: (event: E) => string): Topic<E> => ({
  name,
  schema,
  identity,
});
