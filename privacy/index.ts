import type { Readable } from "node:stream";
import type { Logger } from "pino";
import type { Store } from "../store/index.ts";
import { eraseSubject, type ErasableViews, type ErasureReport } from "./erase.ts";
import { exportJson, exportZip, type ExportViews } from "./export.ts";

export { ErasureError, ERASURES, type ErasureReport } from "./erase.ts";

/** A customer's rights over their data: see all of it, and make it go away. */
export interface Privacy {
  /** Everything held about the subject, as JSON text produced while it is read. */
  exportJson(subject: string): AsyncGenerator<string>;
  /** The same as CSV files in a zip archive, streamed. */
  exportZip(subject: string): Readable;
  /** Erases the subject everywhere; erasures run one at a time. */
  erase(subject: string, by: string): Promise<ErasureReport>;
  close(): Promise<void>;
}

export function startPrivacy(deps: { store: Store; log: Logger; views: ExportViews & ErasableViews }): Privacy {
  let queue: Promise<unknown> = Promise.resolve();
  return {
    exportJson: (subject) => exportJson(subject, deps),
    exportZip: (subject) => exportZip(subject, deps),
    erase(subject, by) {
      const run = queue.then(() => eraseSubject(subject, by, deps));
      queue = run.catch(() => undefined);
      return run;
    },
    async close() {
      await queue;
    },
  };
}
