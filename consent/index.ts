import type { Logger } from "pino";
import { z } from "zod";
import type { ChangeFeed } from "../changes/index.ts";
import { localChangeFeed } from "../changes/local.ts";
import { rebuildAndFollow } from "../changes/rebuild.ts";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { ident, influxql } from "../store/influxql.ts";
import {
  CONSENT_MEASUREMENT,
  consentChanges,
  consentRowToEvent,
  createConsentView,
  purposes,
  type ConsentChange,
  type ConsentEvent,
  type Purpose,
} from "./view.ts";

export { purposes, type Purpose, type ConsentChange, consentChanges, type ConsentEvent } from "./view.ts";

/** Read side of consent, what the hot paths need: no record means no. */
export interface ConsentView {
  allows(subject: string, purpose: Purpose): boolean;
}

export type ConsentState = Record<Purpose, boolean>;

export interface Consent extends ConsentView {
  /**
   * Records opt-ins and opt-outs. Resolves once InfluxDB holds them. A
   * revocation takes effect before that (for the very next message); a grant only
   * after, so nothing is linked to a customer on the strength of an unrecorded yes.
   */
  record(subject: string, changes: Partial<ConsentState>, by: string): Promise<ConsentState>;
  current(subject: string): ConsentState;
  history(subject: string): ConsentChange[];
  /** Erasure: from now on nothing is allowed for the subject, and the history is gone from memory (InfluxDB is erased apart). */
  forgetSubject(subject: string): void;
  close(): Promise<void>;
}

/** `PUT /api/subjects/{id}/consent` body: purposes to booleans, at least one. */
export const consentChangesSchema = z
  .record(z.string(), z.unknown())
  .superRefine((body, ctx) => {
    const keys = Object.keys(body);
    if (keys.length === 0)
      ctx.addIssue({ code: "custom", message: `name at least one purpose (${purposes.join(", ")})` });
    for (const key of keys) {
      if (!(purposes as readonly string[]).includes(key)) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: `unknown purpose; known purposes: ${purposes.join(", ")}`,
        });
      } else if (typeof body[key] !== "boolean") {
        ctx.addIssue({ code: "custom", path: [key], message: "expected true (opt in) or false (opt out)" });
      }
    }
  })
  .transform((body) => body as Partial<ConsentState>);

/**
 * Consent per subject and purpose: an in-memory view rebuilt at start from the
 * `consent` change events in InfluxDB, which are also the full history. A
 * change is written, then published on the feed, and reaches the view through
 * its `apply` like a change made on another node.
 */
export async function startConsent(deps: { store: Store; log: Logger; changes?: ChangeFeed }): Promise<Consent> {
  const log = deps.log.child({ part: "consent" });
  const changes = deps.changes ?? localChangeFeed(log);
  const view = createConsentView();
  // Opt-outs recorded here and not yet in the view: they hold from the moment they are asked
  // for (fail safe), before InfluxDB and the feed have them, and stay if recording fails.
  const withheld = new Map<string, Set<Purpose>>();

  const following = await rebuildAndFollow({
    feed: changes,
    topic: consentChanges,
    log,
    rows: () => deps.store.query(influxql`SELECT * FROM ${ident(CONSENT_MEASUREMENT)}`),
    toEvent: consentRowToEvent,
    apply: (event) => view.apply(event),
  });
  log.info({ subjects: view.subjects(), changes: following.events }, "consent rebuilt from InfluxDB");

  const allows = (subject: string, purpose: Purpose) =>
    withheld.get(subject)?.has(purpose) !== true && view.granted(subject, purpose) === true;
  const current = (subject: string): ConsentState =>
    Object.fromEntries(purposes.map((p) => [p, allows(subject, p)])) as ConsentState;

  return {
    allows,

    async record(subject, requested, by) {
      const entries = purposes
        .filter((p) => requested[p] !== undefined)
        .map((p) => [p, requested[p] === true] as const);
      const events: ConsentEvent[] = entries.map(([purpose, granted]) => ({
        op: granted ? "granted" : "withdrawn",
        subject,
        purpose,
        by,
        micros: nextMicros(),
      }));
      const held = withheld.get(subject) ?? new Set<Purpose>();
      for (const [purpose, granted] of entries) if (!granted) held.add(purpose);
      if (held.size > 0) withheld.set(subject, held);
      await deps.store.write(
        events.map((event) => ({
          measurement: CONSENT_MEASUREMENT,
          tags: { subject, purpose: event.purpose },
          fields: { granted: event.op === "granted", by },
          timestamp: String(event.micros),
        })),
      );
      for (const event of events) await changes.publish(consentChanges, event);
      // Recorded and in the view: this request's answers now speak for themselves.
      for (const [purpose] of entries) held.delete(purpose);
      if (held.size === 0 && withheld.get(subject) === held) withheld.delete(subject);
      log.info({ subject, by, changes: Object.fromEntries(entries) }, "consent recorded");
      return current(subject);
    },

    current,

    history(subject) {
      return view.history(subject);
    },

    forgetSubject(subject) {
      view.forget(subject);
      withheld.delete(subject);
    },

    close() {
      following.stop();
      withheld.clear();
      return Promise.resolve();
    },
  };
}
