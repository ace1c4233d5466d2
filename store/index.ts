import { InfluxDB, type IPoint } from "influx";
import type { Logger } from "pino";
import type { InfluxConfig } from "../config/schema.ts";
import { startInfluxd, type ManagedInfluxd } from "./influxd.ts";

export type Point = IPoint;
export type Row = Record<string, unknown> & { time: Date };

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
  query<T extends Row = Row>(influxql: string): Promise<T[]>;
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
  const url = options.url ?? (managed = await startInfluxd({ dataDir: options.dataDir, binary: options.influxdPath, log: options.log })).url;
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
    ? { authorization: `Basic ${Buffer.from(`${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`).toString("base64")}` }
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
        res = await fetch(writeUrl, { method: "POST", body, headers: { ...authHeader }, signal: AbortSignal.timeout(timeoutMs) });
      } catch (err) {
        const e = err as Error & { cause?: Error };
        throw new StoreWriteError(e.name === "TimeoutError" ? `write timed out after ${timeoutMs} ms` : (e.cause?.message ?? e.message), undefined);
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
    async query<T extends Row>(influxql: string) {
      return (await client.query(influxql)) as unknown as T[];
    },
    async ping(timeoutMs = 2000) {
      try {
        const res = await fetch(new URL("/ping", url), { signal: AbortSignal.timeout(timeoutMs), headers: { ...authHeader } });
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

async function waitUntilReachable(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  for (;;) {
    try {
      const res = await fetch(new URL("/ping", url), { signal: AbortSignal.timeout(1000) });
      if (res.status === 204) return;
      lastError = `HTTP ${res.status}`;
    } catch (err) {
      lastError = (err as Error).cause ? String((err as Error & { cause: Error }).cause.message) : (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw Object.assign(new Error(`InfluxDB at ${redact(url)} is not reachable (${lastError}); check REFEED_INFLUX_URL`), {
        code: "REFEED_INFLUX_UNREACHABLE",
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function toWriteError(err: unknown): StoreWriteError {
  const e = err as Error & { res?: { statusCode?: number } };
  return new StoreWriteError(e.message, e.res?.statusCode);
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString().replace(/\/$/, "");
}
