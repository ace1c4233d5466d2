import { toNanoDate } from "influx";
import type { InfluxQL } from "./influxql.ts";
import { StoreWriteError, type Point, type RawRow, type Row, type Store } from "./index.ts";

/**
 * A row as JSON can keep it: `time` as InfluxDB's nanoseconds (a Date would
 * round them, and change events take their identity from that time).
 */
export type KeptRow = Record<string, unknown> & { time: string };

/** The rows InfluxDB answered to each query, by the query's text. */
export type Answers = Map<string, KeptRow[]>;

export function keepRows(rows: readonly Row[]): KeptRow[] {
  return rows.map((row) => {
    const nanos = (row.time as Date & { getNanoTime?(): string }).getNanoTime?.();
    return { ...row, time: nanos ?? String(BigInt(row.time.getTime()) * 1_000_000n) };
  });
}

/** Rows as `Store.query` answers them, with the nanosecond time the client library hands back. */
export function rowsOf(kept: readonly KeptRow[]): Row[] {
  return kept.map((row) => ({ ...row, time: toNanoDate(row.time) }));
}

/** What the store answers while InfluxDB cannot be reached: the catalogue makes it a 503. */
export class InfluxUnreachableError extends Error {
  readonly code = "REFEED_INFLUX_UNREACHABLE";
}

/**
 * The store as the views see it at start, noting what InfluxDB answered to
 * each query: those answers (with the changes the feed brings later) are what
 * a snapshot keeps, so a start without InfluxDB can answer the same queries.
 */
export function recordingStore(
  store: Store,
  /** Which queries to note: the views' (not a window's history, which would copy device data out of InfluxDB). */
  keep: (text: string) => boolean,
): { store: Store; answers: Answers; stop(): void } {
  const answers: Answers = new Map();
  let recording = true;
  return {
    answers,
    stop: () => {
      recording = false;
    },
    store: {
      ...store,
      url: store.url,
      db: store.db,
      async query<T extends Row = Row>(query: InfluxQL): Promise<T[]> {
        const rows = await store.query<T>(query);
        if (recording && keep(query.text)) answers.set(query.text, keepRows(rows));
        return rows;
      },
    },
  };
}

/**
 * A store that answers from a snapshot until InfluxDB is reachable, then is
 * InfluxDB: parts keep the one store they were given. Until then a query the
 * snapshot has is answered from it, anything else (a write, another query)
 * fails as it would with InfluxDB down, so ingest spools and a command that
 * must record a change answers 503.
 */
export interface SwitchingStore extends Store {
  /** Whether InfluxDB itself is behind the store now. */
  readonly live: boolean;
  /** From now on everything goes to `store`; no query is answered from the snapshot again. */
  goLive(store: Store): void;
  /**
   * Ends the start: until then a query the snapshot has no answer to (one
   * over a time range that moved, a window's history) is answered with no
   * rows, so the parts start with what the snapshot holds; afterwards it
   * fails. Answers the queries that were answered so.
   */
  endStart(): string[];
}

export function snapshotStore(options: { url: string; db: string; answers: Answers }): SwitchingStore {
  let real: Store | undefined;
  let starting = true;
  const unanswered: string[] = [];
  const unreachable = () =>
    new InfluxUnreachableError(
      `InfluxDB at ${options.url} is unreachable: Refeed runs on its last snapshot until it is back; send it again later`,
    );
  const down = (): Promise<never> => Promise.reject(unreachable());
  return {
    get url() {
      return real?.url ?? options.url;
    },
    db: options.db,
    get live() {
      return real !== undefined;
    },
    goLive(store) {
      real = store;
    },
    endStart() {
      starting = false;
      return unanswered.splice(0);
    },
    write: (points: readonly Point[]) =>
      real ? real.write(points) : Promise.reject(new StoreWriteError(unreachable().message, undefined)),
    writeLines: (body: string, timeoutMs: number) =>
      real ? real.writeLines(body, timeoutMs) : Promise.reject(new StoreWriteError(unreachable().message, undefined)),
    writeNanos: (points: readonly Point[]) =>
      real ? real.writeNanos(points) : Promise.reject(new StoreWriteError(unreachable().message, undefined)),
    query<T extends Row = Row>(query: InfluxQL): Promise<T[]> {
      if (real) return real.query<T>(query);
      const kept = options.answers.get(query.text);
      if (kept) return Promise.resolve(rowsOf(kept) as T[]);
      if (!starting) return down();
      unanswered.push(query.text);
      return Promise.resolve([]);
    },
    stream(query: InfluxQL, chunkSize?: number): AsyncIterable<RawRow[]> {
      if (real) return real.stream(query, chunkSize);
      return {
        [Symbol.asyncIterator]: () => ({ next: down }),
      };
    },
    exec: (query: InfluxQL) => (real ? real.exec(query) : down()),
    ping: (timeoutMs?: number) => (real ? real.ping(timeoutMs) : Promise.resolve(false)),
    close: () => real?.close() ?? Promise.resolve(),
  };
}
