import { randomBytes } from "node:crypto";
import { inject } from "vitest";
import type { InfluxQL } from "../../store/influxql.ts";
import { waitFor } from "./wait.ts";

export function influxUrl(): string {
  return inject("influxUrl");
}

/** A database name no other test file uses. */
export function freshDb(prefix = "t"): string {
  return `${prefix}_${randomBytes(5).toString("hex")}`;
}

/** Runs InfluxQL over the plain HTTP API, independent of the platform's own client. */
export async function influxQuery(db: string, q: InfluxQL, url = influxUrl()): Promise<Array<Record<string, unknown>>> {
  const res = await fetch(`${url}/query?${new URLSearchParams({ db, q: q.text })}`);
  const body = (await res.json()) as {
    results: Array<{ error?: string; series?: Array<{ columns: string[]; values: unknown[][] }> }>;
  };
  const result = body.results[0];
  if (!result) throw new Error(`no result for ${q.text}`);
  if (result.error) throw new Error(result.error);
  return (result.series ?? []).flatMap((s) =>
    s.values.map((row) => Object.fromEntries(s.columns.map((c, i) => [c, row[i]]))),
  );
}

type Rows = Array<Record<string, unknown>>;

/**
 * Polls a query until its rows are `ready` (by default: there are some), and
 * answers them. Ingest acknowledges a device's record (PUBACK, HTTP answer,
 * rules) once it is durable on disk, and InfluxDB has it moments later: a test
 * that reads back what a device sent waits for it, then asserts on the rows.
 * Fails with the last rows seen.
 */
export function rowsOnce(
  db: string,
  q: InfluxQL,
  ready: (rows: Rows) => boolean = (rows) => rows.length > 0,
  timeoutMs?: number,
): Promise<Rows> {
  return waitFor(
    async () => {
      const rows = await influxQuery(db, q);
      if (ready(rows)) return rows;
      throw new Error(`${rows.length} rows so far: ${JSON.stringify(rows).slice(0, 2000)}`);
    },
    `the rows of ${q.text}`,
    timeoutMs,
  );
}

/** `ready` for rowsOnce: at least n rows. */
export const atLeast = (n: number) => (rows: Rows) => rows.length >= n;
