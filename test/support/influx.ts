import { randomBytes } from "node:crypto";
import { inject } from "vitest";

export function influxUrl(): string {
  return inject("influxUrl");
}

/** A database name no other test file uses. */
export function freshDb(prefix = "t"): string {
  return `${prefix}_${randomBytes(5).toString("hex")}`;
}

/** Runs InfluxQL over the plain HTTP API, independent of the platform's own client. */
export async function influxQuery(db: string, q: string, url = influxUrl()): Promise<Array<Record<string, unknown>>> {
  const res = await fetch(`${url}/query?${new URLSearchParams({ db, q })}`);
  const body = (await res.json()) as { results: Array<{ error?: string; series?: Array<{ columns: string[]; values: unknown[][] }> }> };
  const result = body.results[0];
  if (!result) throw new Error(`no result for ${q}`);
  if (result.error) throw new Error(result.error);
  return (result.series ?? []).flatMap((s) => s.values.map((row) => Object.fromEntries(s.columns.map((c, i) => [c, row[i]]))));
}
