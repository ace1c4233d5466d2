import type { Logger } from "pino";
import type { ChangeFeed, Topic } from "../changes/index.ts";
import { keepRows, type Answers } from "../store/answers.ts";
import type { Store } from "../store/index.ts";
import { trusted } from "../store/influxql.ts";
import { prepareAnswers, removeSnapshot, writeSnapshot, type ViewSnapshot } from "./file.ts";

export { readSnapshot, SNAPSHOT_FILE, SNAPSHOT_FORMAT, type SnapshotRead, type ViewSnapshot } from "./file.ts";

export interface SnapshotConfig {
  file: string;
  /** How often a snapshot that changed is written. */
  everyMs: number;
  /** Changes kept beside the answers before the answers are asked of InfluxDB again (so the file stays bounded). */
  compactAfterEvents?: number;
}

export interface Snapshots {
  /** Writes the snapshot now if anything changed since it was last written. */
  write(): Promise<void>;
  /**
   * Asks InfluxDB again for every answer and drops the changes those answers
   * hold, then writes: after a catch-up, and after an erasure (the snapshot
   * must not keep what was erased).
   */
  renew(): Promise<void>;
  /** The platform has started: writes the first snapshot, then every `everyMs` when it changed. */
  begin(): void;
  close(): Promise<void>;
}

/**
 * Keeps a snapshot of the views in the data dir: InfluxDB's answers to the
 * views' queries at their last rebuild, and every change on the feed since.
 * The views are idempotent, so answering the same queries and applying the
 * changes again rebuilds them as they were. Written when it changed, at most
 * every `everyMs`, and at shutdown.
 */
export function keepSnapshots(
  config: SnapshotConfig,
  deps: {
    log: Logger;
    changes: ChangeFeed;
    /** The topics whose changes the views take from the feed. */
    topics: readonly Topic<unknown>[];
    /**
     * Topics whose changes are written at once rather than at the next
     * interval: what decides who gets in and what may be stored (a revoked
     * token, a withdrawn opt-in) must not be missing after a crash.
     */
    urgent?: ReadonlySet<string>;
    /** Where an erasure ends: the snapshot is renewed so it holds nothing of the subject. */
    erasures: Topic<{ op: string }>;
    influx: { url: string; db: string };
    answers: Answers;
    /** Changes a previous snapshot kept (a start from it). */
    events?: ViewSnapshot["events"];
    store: Store;
    /** Whether InfluxDB answers through `store` (not a snapshot). */
    live(): boolean;
  },
): Snapshots {
  const log = deps.log.child({ part: "snapshot" });
  // Not before the platform started: a snapshot of a start half done would miss the later parts' answers.
  let timer: NodeJS.Timeout | undefined;
  const compactAfter = config.compactAfterEvents ?? 20_000;
  // The same map the recording store fills while the views start. At the first write it becomes JSON
  // (most of the file, changed only by a renewal) and only its queries stay as they are.
  let answers: Answers | undefined = deps.answers;
  let queries: string[] = [];
  let prepared = prepareAnswers([]);
  const serialized = () => {
    if (answers) {
      queries = [...answers.keys()];
      prepared = prepareAnswers([...answers]);
      answers.clear();
      answers = undefined;
    }
    return prepared;
  };
  // topic + identity -> the change, with when it arrived: a change applied twice is kept once.
  const events = new Map<string, { topic: string; event: unknown; seq: number; at: number }>();
  let seq = 0;
  const keep = (topic: string, identity: string, event: unknown) => {
    const key = `${topic}\u0000${identity}`;
    if (events.has(key)) return;
    events.set(key, { topic, event, seq: ++seq, at: Date.now() });
    dirty = true;
    if (timer !== undefined && soon === undefined && deps.urgent?.has(topic))
      soon = setTimeout(() => {
        soon = undefined;
        void serially(() => writeNow()).catch(() => undefined);
      }, 0);
  };
  let soon: NodeJS.Timeout | undefined;
  let dirty = false;
  // An erasure finished, or a renewal failed after one: nothing is written until answers come from InfluxDB again.
  let mustRenew = false;
  for (const { topic, event } of deps.events ?? []) {
    const t = deps.topics.find((x) => x.name === topic);
    const parsed = t?.schema.safeParse(event);
    if (t && parsed?.success) keep(topic, t.identity(parsed.data), parsed.data);
  }
  // The first write makes the snapshot of this start's rebuild (or keeps the one it started from).
  dirty = true;
  const stops = deps.topics.map((topic) =>
    deps.changes.subscribe(topic, (event) => keep(topic.name, topic.identity(event), event)),
  );
  stops.push(
    deps.changes.subscribe(deps.erasures, (event) => {
      if (event.op !== "recorded") return;
      mustRenew = true;
      void serially(() => renewNow(true)).catch(() => undefined);
    }),
  );

  let queue: Promise<unknown> = Promise.resolve();
  const serially = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work, work);
    queue = run.catch(() => undefined);
    return run;
  };

  const writeNow = async (compact = true) => {
    if (!dirty) return;
    if (mustRenew) return renewNow(true);
    dirty = false;
    try {
      const bytes = await writeSnapshot(config.file, {
        writtenAt: new Date().toISOString(),
        influx: deps.influx,
        prepared: serialized(),
        events: [...events.values()].map(({ topic, event }) => ({ topic, event })),
      });
      log.debug({ bytes, queries: queries.length, changes: events.size }, "views snapshot written");
    } catch (err) {
      dirty = true;
      log.warn({ file: config.file, err: (err as Error).message }, "views snapshot could not be written");
      return;
    }
    if (compact && events.size > compactAfter && deps.live()) await renewNow(false);
  };

  /**
   * After an erasure every change kept so far goes (the answers hold what
   * remains of them); otherwise changes of the last minute stay, since some
   * (the action log) reach the feed before InfluxDB has them.
   */
  const renewNow = async (erasure: boolean) => {
    const mark = seq;
    const started = Date.now();
    try {
      if (!deps.live()) throw new Error("InfluxDB is not reachable");
      serialized();
      const fresh: Answers = new Map();
      for (const text of queries) fresh.set(text, keepRows(await deps.store.query(trusted(text))));
      answers = fresh;
    } catch (err) {
      if (erasure) {
        // What the subject had may be in the old snapshot: no snapshot is safer than that one.
        await removeSnapshot(config.file).catch(() => undefined);
        log.warn(
          { file: config.file, err: (err as Error).message },
          "views snapshot removed: it could not be renewed after an erasure; the next one is written once InfluxDB answers",
        );
      }
      return;
    }
    for (const [key, kept] of events)
      if (kept.seq <= mark && (erasure || kept.at < started - 60_000)) events.delete(key);
    mustRenew = false;
    dirty = true;
    await writeNow(false);
    log.info({ queries: queries.length, changes: events.size }, "views snapshot renewed from InfluxDB");
  };

  return {
    begin() {
      timer ??= setInterval(() => void serially(() => writeNow()).catch(() => undefined), config.everyMs);
      timer.unref();
      void serially(() => writeNow()).catch(() => undefined);
    },
    write: () => serially(() => writeNow()),
    renew: () => serially(() => renewNow(mustRenew)),
    async close() {
      for (const stop of stops) stop();
      if (timer === undefined) return;
      clearInterval(timer);
      clearTimeout(soon);
      await serially(() => writeNow(false));
    },
  };
}
