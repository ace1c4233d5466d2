import type { Logger } from "pino";
import { z } from "zod";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { ident, influxql } from "../store/influxql.ts";

/**
 * What a customer can opt in to, one purpose at a time. Each message kind needs
 * one (see ingest's `purposeOf`); the rules engine asks for `personalization`.
 */
export const purposes = ["analytics", "personalization", "feedback"] as const;
export type Purpose = (typeof purposes)[number];

/** Read side of consent, what the hot paths need: no record means no. */
export interface ConsentView {
  allows(subject: string, purpose: Purpose): boolean;
}

export interface ConsentChange {
  subject: string;
  purpose: Purpose;
  granted: boolean;
  /** Who recorded it: `admin`, or `customer` (the subject's own token). */
  by: string;
  at: Date;
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

const MEASUREMENT = "consent";

/**
 * Consent per subject and purpose: an in-memory view rebuilt at start from the
 * `consent` change events in InfluxDB, which are also the full history.
 */
export async function startConsent(deps: { store: Store; log: Logger }): Promise<Consent> {
  const log = deps.log.child({ part: "consent" });
  const state = new Map<string, Map<Purpose, boolean>>();
  const changes = new Map<string, ConsentChange[]>();

  const apply = (change: ConsentChange) => {
    let purposesOf = state.get(change.subject);
    if (!purposesOf) state.set(change.subject, (purposesOf = new Map()));
    purposesOf.set(change.purpose, change.granted);
    const list = changes.get(change.subject) ?? [];
    list.push(change);
    changes.set(change.subject, list);
  };

  const rows = await deps.store.query<{ time: Date; subject: string; purpose: string; granted: boolean; by?: string }>(
    influxql`SELECT * FROM ${ident(MEASUREMENT)}`,
  );
  for (const row of rows) {
    if (!(purposes as readonly string[]).includes(row.purpose)) continue;
    apply({
      subject: row.subject,
      purpose: row.purpose as Purpose,
      granted: row.granted === true,
      by: row.by ?? "unknown",
      at: row.time,
    });
  }
  log.info({ subjects: state.size, changes: rows.length }, "consent rebuilt from InfluxDB");

  const current = (subject: string): ConsentState =>
    Object.fromEntries(purposes.map((p) => [p, state.get(subject)?.get(p) === true])) as ConsentState;

  return {
    allows(subject, purpose) {
      return state.get(subject)?.get(purpose) === true;
    },

    async record(subject, requested, by) {
      const entries = purposes
        .filter((p) => requested[p] !== undefined)
        .map((p) => [p, requested[p] === true] as const);
      const events = entries.map(([purpose, granted]) => {
        const micros = nextMicros();
        return { change: { subject, purpose, granted, by, at: new Date(Math.floor(micros / 1000)) }, micros };
      });
      // Fail safe: an opt-out stops linking now, even if recording it has to be retried.
      for (const { change } of events) if (!change.granted) state.get(subject)?.set(change.purpose, false);
      await deps.store.write(
        events.map(({ change, micros }) => ({
          measurement: MEASUREMENT,
          tags: { subject, purpose: change.purpose },
          fields: { granted: change.granted, by },
          timestamp: String(micros),
        })),
      );
      for (const { change } of events) apply(change);
      log.info({ subject, by, changes: Object.fromEntries(entries) }, "consent recorded");
      return current(subject);
    },

    current,

    history(subject) {
      return [...(changes.get(subject) ?? [])];
    },

    forgetSubject(subject) {
      state.delete(subject);
      changes.delete(subject);
    },

    async close() {
      state.clear();
      changes.clear();
    },
  };
}
