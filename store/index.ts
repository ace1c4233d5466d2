import { InfluxDB, type IPoint } from "influx";
import type { Logger } from "pino";
import type { InfluxConfig } from "../config/schema.ts";
import { startInfluxd, type ManagedInfluxd } from "./influxd.ts";
import type { InfluxQL } from "./influxql.ts";

export type Point = IPoint;
export type Row = Record<string, unknown> & { time: Date };
/**
 * A row as InfluxDB sent it: `time` is its RFC 3339 text with every digit of
 * the nanoseconds (a JavaScript number or Date would round them), so a point
 * found this way can be deleted or rewritten exactly.
 */
export type RawRow = Record<string, unknown> & { time: string };

/**
 * The one system of record. Parts write and query through this small
 * interface; only this module knows the InfluxDB client library.
 */
export interface Store {
  readonly url: string;
  readonly db: string;
  /** Writes points (microsecond timestamps) and resolves once InfluxDB accepted them. */
  write(points: readonly Point[]): Promise<void>;
  /**
   * Posts line protocol with microsecond timestamps as is (the ingest path builds,
   * batches and spools it). Rejects with a StoreWriteError carrying InfluxDB's status
   * and message; `timeoutMs` turns a hung request into an error without a status.
   */
  writeLines(body: string, timeoutMs: number): Promise<void>;
  query<T extends Row = Row>(query: InfluxQL): Promise<T[]>;
  /**
   * Streams the rows of one SELECT in chunks (InfluxDB's `chunked=true`), so a
   * long history never sits in memory: the next chunk is read only when the
   * consumer asks for it.
   */
  stream(query: InfluxQL, chunkSize?: number): AsyncIterable<RawRow[]>;
  /** Runs statements that change data or answer with names (DELETE, SHOW ...); answers each statement's rows. */
  exec(query: InfluxQL): Promise<RawRow[][]>;
  /** Writes points whose timestamps are nanosecond strings: to overwrite fields of existing points in place. */
  writeNanos(points: readonly Point[]): Promise<void>;
  ping(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

export class StoreWriteError extends Error {
  readonly code = "REFEED_INFLUX_WRITE";
  constructor(
    message: string,
    /** HTTP status from InfluxDB, or undefined when it could not be reached. */
    readonly status: number | undefined,
  ) {
    super(message);
  }
}

export interface StoreOptions extends InfluxConfig {
  dataDir: string;
  log: Logger;
}

export async function openStore(options: StoreOptions): Promise<Store> {
  let managed: ManagedInfluxd | undefined;
  const url =
    options.url ??
    (managed = await startInfluxd({ dataDir: options.dataDir, binary: options.influxdPath, log: options.log })).url;
  const parsed = new URL(url);
  const client = new InfluxDB({
    host: parsed.hostname,
    port: Number(parsed.port || (parsed.protocol === "https:" ? 443 : 80)),
    protocol: parsed.protocol === "https:" ? "https" : "http",
    username: decodeURIComponent(parsed.username) || undefined,
    password: decodeURIComponent(parsed.password) || undefined,
    database: options.db,
  });
  const authHeader = parsed.username
    ? {
        authorization: `Basic ${Buffer.from(`${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`).toString("base64")}`,
      }
    : undefined;

  try {
    await waitUntilReachable(url, options.connectTimeoutMs);
    // CREATE DATABASE is idempotent in InfluxDB 1.x.
    await client.createDatabase(options.db);
  } catch (err) {
    await managed?.close();
    throw err;
  }

  const writeUrl = new URL("/write", url);
  writeUrl.search = new URLSearchParams({ db: options.db, precision: "u" }).toString();
  writeUrl.username = "";
  writeUrl.password = "";

  const queryUrl = new URL("/query", url);
  queryUrl.search = new URLSearchParams({ db: options.db }).toString();
  queryUrl.username = "";
  queryUrl.password = "";

  const store: Store = {
    url: managed ? url : redact(url),
    db: options.db,
    async write(points) {
      if (points.length === 0) return;
      try {
        await client.writePoints(points as IPoint[], { precision: "u" });
      } catch (err) {
        throw toWriteError(err);
      }
    },
    async writeLines(body, timeoutMs) {
      let res: Response;
      try {
        res = await fetch(writeUrl, {
          method: "POST",
          body,
          headers: { ...authHeader },
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        const e = err as Error & { cause?: Error };
        throw new StoreWriteError(
          e.name === "TimeoutError" ? `write timed out after ${timeoutMs} ms` : (e.cause?.message ?? e.message),
          undefined,
        );
      }
      if (res.status === 204) return;
      const text = await res.text().catch(() => "");
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // not JSON: keep the text
      }
      throw new StoreWriteError(message || `HTTP ${res.status}`, res.status);
    },
    async query<T extends Row>(query: InfluxQL) {
      return (await client.query(query.text)) as unknown as T[];
    },
    stream(query, chunkSize = 1000) {
      return streamQuery(queryUrl, authHeader, query.text, chunkSize);
    },
    async exec(query) {
      const res = await fetch(queryUrl, {
        method: "POST",
        headers: { ...authHeader, "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ q: query.text }),
      });
      const body = (await res.json().catch(() => ({}))) as QueryBody;
      if (!res.ok && !body.results) throw new StoreQueryError(body.error ?? `HTTP ${res.status}`);
      return (body.results ?? []).map((result) => {
        if (result.error) throw new StoreQueryError(result.error);
        return rowsOf(result);
      });
    },
    async writeNanos(points) {
      if (points.length === 0) return;
      try {
        await client.writePoints(points as IPoint[], { precision: "n" });
      } catch (err) {
        throw toWriteError(err);
      }
    },
    async ping(timeoutMs = 2000) {
      try {
        const res = await fetch(new URL("/ping", url), {
          signal: AbortSignal.timeout(timeoutMs),
          headers: { ...authHeader },
        });
        return res.status === 204;
      } catch {
        return false;
      }
    },
    async close() {
      await managed?.close();
    },
  };
  return store;
}

export class StoreQueryError extends Error {
  readonly code = "REFEED_INFLUX_QUERY";
}

interface QueryResult {
  error?: string;
  series?: Array<{ name: string; tags?: Record<string, string>; columns: string[]; values: unknown[][] }>;
}
interface QueryBody {
  error?: string;
  results?: QueryResult[];
}

function rowsOf(result: QueryResult): RawRow[] {
  const rows: RawRow[] = [];
  for (const series of result.series ?? []) {
    for (const values of series.values) {
      const row: Record<string, unknown> = { ...series.tags };
      series.columns.forEach((column, i) => (row[column] = values[i]));
      row[SERIES] = series.name;
      rows.push(row as RawRow);
    }
  }
  return rows;
}

/** The key under which a row says which measurement (series name) it came from, e.g. in SHOW FIELD KEYS. */
export const SERIES = "@series";

async function* streamQuery(
  queryUrl: URL,
  authHeader: Record<string, string> | undefined,
  text: string,
  chunkSize: number,
): AsyncGenerator<RawRow[]> {
  const res = await fetch(queryUrl, {
    method: "POST",
    headers: { ...authHeader, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ q: text, chunked: "true", chunk_size: String(chunkSize) }),
  });
  if (!res.ok || !res.body) throw new StoreQueryError(`${(await res.text().catch(() => "")) || `HTTP ${res.status}`}`);
  // Each chunk is one JSON document on a line of its own.
  let rest = "";
  const decoder = new TextDecoder();
  for await (const bytes of res.body as unknown as AsyncIterable<Uint8Array>) {
    rest += decoder.decode(bytes, { stream: true });
    let newline: number;
    while ((newline = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, newline);
      rest = rest.slice(newline + 1);
      if (line.trim()) yield* chunkRows(line);
    }
  }
  if (rest.trim()) yield* chunkRows(rest);
}

function* chunkRows(line: string): Generator<RawRow[]> {
  const body = JSON.parse(line) as QueryBody;
  if (body.error) throw new StoreQueryError(body.error);
  for (const result of body.results ?? []) {
    if (result.error) throw new StoreQueryError(result.error);
    const rows = rowsOf(result);
    if (rows.length > 0) yield rows;
  }
}

async function waitUntilReachable(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  for (;;) {
    try {
      const res = await fetch(new URL("/ping", url), { signal: AbortSignal.timeout(1000) });
      if (res.status === 204) return;
      lastError = `HTTP ${res.status}`;
    } catch (err) {
      lastError = (err as Error).cause
        ? String((err as Error & { cause: Error }).cause.message)
        : (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw Object.assign(
        new Error(`InfluxDB at ${redact(url)} is not reachable (${lastError}); check REFEED_INFLUX_URL`),
        {
          code: "REFEED_INFLUX_UNREACHABLE",
        },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function toWriteError(err: unknown): StoreWriteError {
  const e = err as Error & { res?: { statusCode?: number } };
  return new StoreWriteError(e.message, e.res?.statusCode);
}

/** A URL as Refeed shows it (logs, the store's `url`): without its password. */
export function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString().replace(/\/$/, "");
}
