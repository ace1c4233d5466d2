import { influxQuery } from "./influx.ts";
import { ident, influxql, regex } from "../../store/influxql.ts";

/**
 * Searches every measurement of the database for a subject id, with plain
 * InfluxQL and nothing of the platform's code: every series key and tag value
 * (of series that exist), and every string field, as a substring. Answers
 * one line per hit, e.g. "telemetry: tag subject" or "action_log: field why (2)".
 */
export async function whereSubjectIs(db: string, subject: string): Promise<string[]> {
  const hits: string[] = [];
  const pattern = subject.replaceAll(".", "\\.");
  const measurements = (await influxQuery(db, influxql`SHOW MEASUREMENTS`)).map((r) => String(r.name));
  for (const m of measurements) {
    const series = (await influxQuery(db, influxql`SHOW SERIES FROM ${ident(m)}`)).map((r) => String(r.key));
    if (series.some((key) => key.includes(subject))) hits.push(`${m}: series key`);
    for (const tagKey of (await influxQuery(db, influxql`SHOW TAG KEYS FROM ${ident(m)}`)).map((r) =>
      String(r.tagKey),
    )) {
      // A WHERE makes InfluxDB 1.x answer from existing series; unfiltered, tsi1 still lists values of dropped series.
      const values = await influxQuery(
        db,
        influxql`SHOW TAG VALUES FROM ${ident(m)} WITH KEY = ${ident(tagKey)} WHERE ${ident(tagKey)} =~ /./`,
      );
      if (values.some((v) => String(v.value).includes(subject))) hits.push(`${m}: tag ${tagKey}`);
      const points = await influxQuery(
        db,
        influxql`SELECT * FROM ${ident(m)} WHERE ${ident(tagKey)} =~ ${regex(pattern)}`,
      );
      if (points.length > 0) hits.push(`${m}: points tagged ${tagKey} (${points.length})`);
    }
    for (const field of await influxQuery(db, influxql`SHOW FIELD KEYS FROM ${ident(m)}`)) {
      if (field.fieldType !== "string") continue;
      const fieldKey = String(field.fieldKey);
      const [count] = await influxQuery(
        db,
        influxql`SELECT count(${ident(fieldKey)}) FROM ${ident(m)} WHERE ${ident(fieldKey)} =~ ${regex(pattern)}`,
      );
      if (count && Number(count.count) > 0) hits.push(`${m}: field ${fieldKey} (${Number(count.count)})`);
    }
  }
  return hits;
}
