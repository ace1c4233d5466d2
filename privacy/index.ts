import type { Readable } from "node:stream";
import type { Logger } from "pino";
import type { Store } from "../store/index.ts";
import type { ChangeFeed } from "../changes/index.ts";
import { microsOfRow } from "../store/clock.ts";
import { ident, influxql } from "../store/influxql.ts";
import { ERASURES, erasureChanges, erasureRow, erasureView, followErasures, type ErasureView } from "./erasures.ts";
import { eraseSubject, type ErasableViews, type ErasureReport } from "./erase.ts";
import { exportJson, exportZip, type ExportViews } from "./export.ts";

export { ErasureError, type ErasureReport } from "./erase.ts";
export { ERASURES, erasureChanges, type ErasureEvent, type ErasureRecord } from "./erasures.ts";

/** A customer's rights over their data: see all of it, and make it go away. */
export interface Privacy {
  /** Everything held about the subject, as JSON text produced while it is read. */
  exportJson(subject: string): AsyncGenerator<string>;
  /** The same as CSV files in a zip archive, streamed. */
  exportZip(subject: string): Readable;
  /** Erases the subject everywhere; erasures run one at a time. */
  erase(subject: string, by: string): Promise<ErasureReport>;
  /** The record of finished erasures (subjects by salted hash only), rebuilt at start and fed by the feed. */
  readonly erasures: ErasureView;
  close(): Promise<void>;
}

export async function startPrivacy(deps: {
  store: Store;
  log: Logger;
  changes: ChangeFeed;
  views: ExportViews & ErasableViews;
  /** This node's id, named in its confirmations of another node's erasure. */
  node: string;
}): Promise<Privacy> {
  const log = deps.log.child({ part: "privacy" });
  const erasures = erasureView();
  // Following first, then the rebuild: a change arriving meanwhile is not lost, and meeting it twice is harmless.
  const stops = [
    deps.changes.subscribe(erasureChanges, (event) => erasures.apply(event)),
    followErasures(deps.changes, deps.views, deps.node, log),
  ];
  const rebuild = async () => {
    for (const row of await deps.store.query(influxql`SELECT * FROM ${ident(ERASURES)}`)) {
      const parsed = erasureRow.safeParse({ ...row, micros: microsOfRow(row.time) });
      if (parsed.success) erasures.apply(parsed.data);
      else log.warn({ issue: parsed.error.issues[0]?.message }, "unreadable erasure row skipped at rebuild");
    }
  };
  await rebuild();
  stops.push(deps.changes.onResync?.(rebuild) ?? (() => undefined));
  log.info({ erasures: erasures.records().length }, "erasure record rebuilt from InfluxDB");
  let queue: Promise<unknown> = Promise.resolve();
  return {
    exportJson: (subject) => exportJson(subject, deps),
    exportZip: (subject) => exportZip(subject, deps),
    erase(subject, by) {
      const run = queue.then(() => eraseSubject(subject, by, deps));
      queue = run.catch(() => undefined);
      return run;
    },
    erasures,
    async close() {
      for (const stop of stops) stop();
      await queue;
    },
  };
}
