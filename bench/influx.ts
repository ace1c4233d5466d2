/** The benchmark's questions to InfluxDB (1.x HTTP API), about what the systems under test stored. */

export async function createDatabase(url: string, db: string): Promise<void> {
  const res = await fetch(`${url}/query?${new URLSearchParams({ q: `CREATE DATABASE "${db}"` })}`, { method: "POST" });
  if (res.status !== 200) throw new Error(`CREATE DATABASE ${db}: InfluxDB answered ${res.status}`);
}

/**
 * Points InfluxDB has written into a database so far, from its own counters
 * (`/debug/vars`, per shard): cheap enough to ask ten times a second while a
 * run goes on, which a count query over millions of points is not.
 */
export async function pointsWritten(url: string, db: string): Promise<number> {
  const vars = (await (await fetch(`${url}/debug/vars`)).json()) as Record<
    string,
    { name?: string; tags?: { database?: string }; values?: { writePointsOk?: number } }
  >;
  let total = 0;
  for (const entry of Object.values(vars))
    if (entry?.name === "shard" && entry.tags?.database === db) total += entry.values?.writePointsOk ?? 0;
  return total;
}

/** A sampler of points written since now, for a run's `stored`. */
export async function pointsSince(url: string, db: string): Promise<() => Promise<number>> {
  const base = await pointsWritten(url, db);
  return async () => (await pointsWritten(url, db)) - base;
}

/**
 * Per device: stored telemetry points and distinct sequence numbers from a
 * time on, the exact count every run is checked against (a point counted
 * twice, or a sequence number stored twice, shows up here). A step's points
 * are stamped at receipt, on this machine, after the step began, and the step
 * before has settled by then: counting from the step's start exactly is right,
 * where a slack before it counted the previous step's last points as duplicates.
 */
export async function storedPerDevice(
  url: string,
  db: string,
  sinceMs: number,
): Promise<Map<string, { count: number; distinct: number }>> {
  const q = `SELECT count("seq"), count(distinct("seq")) FROM "telemetry" WHERE time >= ${Math.floor(sinceMs)}ms GROUP BY "device"`;
  const res = await fetch(`${url}/query?${new URLSearchParams({ db, q })}`);
  const body = (await res.json()) as {
    results: Array<{ error?: string; series?: Array<{ tags: { device: string }; values: number[][] }> }>;
  };
  const result = body.results[0];
  if (result?.error) throw new Error(`counting stored points: ${result.error}`);
  const out = new Map<string, { count: number; distinct: number }>();
  for (const series of result?.series ?? [])
    out.set(series.tags.device, { count: series.values[0]?.[1] ?? 0, distinct: series.values[0]?.[2] ?? 0 });
  return out;
}

/** Acknowledged or sent records per device against what is stored: lost and duplicated points. */
export function compareStored(
  expected: ReadonlyMap<string, number> | Record<string, number>,
  stored: Map<string, { count: number; distinct: number }>,
) {
  let lost = 0;
  let duplicated = 0;
  let total = 0;
  const entries: Iterable<[string, number]> = expected instanceof Map ? expected : Object.entries(expected);
  for (const [device, n] of entries) {
    const s = stored.get(device) ?? { count: 0, distinct: 0 };
    total += n;
    lost += Math.max(0, n - s.distinct);
    duplicated += s.count - s.distinct;
  }
  return { lost, duplicated, total };
}
