/**
 * The durable writer's mode, which used to be four flags. Where new batches
 * go is the route:
 * - `direct`: to InfluxDB (through the memory queue);
 * - `spooling`: InfluxDB is down or slower than the traffic; every batch goes
 *   to the disk spool, in order, while the spool is replayed;
 * - `catching-up`: the replay has reached the end of the spool; new batches
 *   wait in memory (not in the spool) while the last appends land and are
 *   replayed, so the switch back to direct writes keeps the order and cannot
 *   be outrun by traffic.
 * Beside the route, whether the commit log is failing (then batches are
 * acknowledged once InfluxDB or the spool has them) and whether the writer is
 * closing (it takes nothing new and starts no replay).
 */
export type CommitLogHealth = "ok" | "failing";

interface Common {
  readonly commitLog: CommitLogHealth;
  readonly closing: boolean;
}

export type WriterMode =
  | ({ readonly route: "direct" } & Common)
  | ({ readonly route: "spooling" } & Common)
  | ({ readonly route: "catching-up" } & Common);

export type WriterEvent =
  /** A batch went to the spool (a write failed, the queue was full, or the spool holds batches of an earlier run). */
  | { readonly type: "spooled" }
  /** The replay is one round from the end of the spool. */
  | { readonly type: "spool-nearly-replayed" }
  /** A catch-up is given up (InfluxDB is down again, or the writer closes): what waits in memory goes to the spool. */
  | { readonly type: "catch-up-abandoned" }
  /** The spool is empty and nothing is being appended to it. */
  | { readonly type: "spool-replayed" }
  | { readonly type: "commit-log-failed" }
  | { readonly type: "commit-log-durable" }
  | { readonly type: "close" };

export const initialMode: WriterMode = { route: "direct", commitLog: "ok", closing: false };

/** The one transition function of the writer's mode; an event that cannot happen in a mode leaves it as it is. */
export function next(mode: WriterMode, event: WriterEvent): WriterMode {
  switch (event.type) {
    case "spooled":
      return mode.route === "spooling" ? mode : { ...mode, route: "spooling" };
    case "spool-nearly-replayed":
      // Only a replay moves to the catch-up, and a replay runs only while spooling.
      return mode.route === "spooling" ? { ...mode, route: "catching-up" } : mode;
    case "catch-up-abandoned":
      return mode.route === "catching-up" ? { ...mode, route: "spooling" } : mode;
    case "spool-replayed":
      return mode.route === "direct" ? mode : { ...mode, route: "direct" };
    case "commit-log-failed":
      return mode.commitLog === "failing" ? mode : { ...mode, commitLog: "failing" };
    case "commit-log-durable":
      return mode.commitLog === "ok" ? mode : { ...mode, commitLog: "ok" };
    case "close":
      return mode.closing ? mode : { ...mode, closing: true };
  }
}
