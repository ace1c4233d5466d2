import { influxQuery } from "./influx.ts";

/**
 * Searches every measurement of the database for a subject id, with plain
 * InfluxQL and nothing of the platform's code: every series key and tag value
 * (of series that exist), and every string field, as a substring. Answers
 * one line per hit, e.g. "telemetry: tag subject" or "action_log: field why (2)".
 */
export async function whereSubjectIs(db: string, subject: string): Promise<string[]> {
  const hits: string[] = [];
  const pattern = subject.replaceAll(".", "\\.");
  const measurements = (await influxQuery(db, "SHOW MEASUREMENTS")).map((r) => String(r.name));
  for (const m of measurements) {
    const series = (await influxQuery(db, `SHOW SERIES FROM "${m}"`)).map((r) => String(r.key));
    if (series.some((key) => key.includes(subject))) hits.push(`${m}: series key`);
    for (const tagKey of (await influxQuery(db, `SHOW TAG KEYS FROM "${m}"`)).map((r) => String(r.tagKey))) {
      // A WHERE makes InfluxDB 1.x answer from existing series; unfiltered, tsi1 still lists values of dropped series.
      const values = await influxQuery(
        db,
        `SHOW TAG VALUES FROM "${m}" WITH KEY = "${tagKey}" WHERE "${tagKey}" =~ /./`,
      );
      if (values.some((v) => String(v.value).includes(subject))) hits.push(`${m}: tag ${tagKey}`);
      const points = await influxQuery(db, `SELECT * FROM "${m}" WHERE "${tagKey}" =~ /${pattern}/`);
      if (points.length > 0) hits.push(`${m}: points tagged ${tagKey} (${points.length})`);
    }
    for (const { fieldKey, fieldType } of await influxQuery(db, `SHOW FIELD KEYS FROM "${m}"`)) {
      if (fieldType !== "string" || typeof fieldKey !== "string") continue;
      const [count] = await influxQuery(
        db,
        `SELECT count("${fieldKey}") FROM "${m}" WHERE "${fieldKey}" =~ /${pattern}/`,
      );
      if (count && Number(count.count) > 0) hits.push(`${m}: field ${fieldKey} (${Number(count.count)})`);
    }
  }
  return hits;
}
