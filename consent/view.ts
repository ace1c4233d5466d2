import { z } from "zod";
import { topic } from "../changes/index.ts";
import { microsOfRow, microsToMs } from "../store/clock.ts";

/**
 * What a customer can opt in to, one purpose at a time. Each message kind needs
 * one (see ingest's `purposeOf`); the rules engine asks for `personalization`.
 */
export const purposes = ["analytics", "personalization", "feedback"] as const;
export type Purpose = (typeof purposes)[number];

const fields = {
  subject: z.string().min(1),
  purpose: z.enum(purposes),
  /** Who recorded it: `admin`, or `customer` (the subject's own token). */
  by: z.string(),
  micros: z.number().int().nonnegative(),
};
/** One opt-in or opt-out of one subject for one purpose, as stored in `consent` and carried by the feed. */
export const consentEventSchema = z.discriminatedUnion("op", [
  z.object({ op: z.literal("granted"), ...fields }),
  z.object({ op: z.literal("withdrawn"), ...fields }),
]);
export type ConsentEvent = z.infer<typeof consentEventSchema>;

export const consentChanges = topic<ConsentEvent>(
  "consent",
  consentEventSchema,
  (e) => `consent:${e.subject}:${e.purpose}:${e.micros}`,
);

export const CONSENT_MEASUREMENT = "consent";

/** A `consent` row as the event it recorded. */
export const consentRowToEvent = (row: Record<string, unknown>): unknown => ({
  op: row.granted === true ? "granted" : "withdrawn",
  subject: row.subject,
  purpose: row.purpose,
  by: typeof row.by === "string" ? row.by : "unknown",
  micros: row.time instanceof Date ? microsOfRow(row.time) : undefined,
});

export interface ConsentChange {
  subject: string;
  purpose: Purpose;
  granted: boolean;
  by: string;
  at: Date;
}

export interface ConsentStateView {
  /** Answers true when the event was new (a repeat changes nothing and answers false). */
  apply(event: ConsentEvent): boolean;
  /** The newest answer for the purpose, undefined when the subject never gave one. */
  granted(subject: string, purpose: Purpose): boolean | undefined;
  /** Oldest first. */
  history(subject: string): ConsentChange[];
  subjects(): number;
  /** Erasure: everything about the subject leaves memory, the identities of its events too. */
  forget(subject: string): void;
}

/**
 * Consent as its events make it: per subject and purpose the newest event
 * wins, and the history keeps each event once, in time order, whatever order
 * they arrive in.
 */
export function createConsentView(): ConsentStateView {
  const bySubject = new Map<string, ConsentEvent[]>();
  // The hot paths ask per message: the newest event per purpose, kept beside the history.
  const latest = new Map<string, Map<Purpose, ConsentEvent>>();
  const identities = new Map<string, Set<string>>();
  return {
    apply(event) {
      const identity = consentChanges.identity(event);
      const seen = identities.get(event.subject) ?? new Set<string>();
      if (seen.has(identity)) return false;
      seen.add(identity);
      identities.set(event.subject, seen);
      const list = bySubject.get(event.subject) ?? [];
      let at = list.length;
      while (at > 0 && later(list[at - 1]!, event)) at--;
      list.splice(at, 0, event);
      bySubject.set(event.subject, list);
      const newest = latest.get(event.subject) ?? new Map<Purpose, ConsentEvent>();
      const before = newest.get(event.purpose);
      if (!before || later(event, before)) newest.set(event.purpose, event);
      latest.set(event.subject, newest);
      return true;
    },
    granted(subject, purpose) {
      const event = latest.get(subject)?.get(purpose);
      return event && event.op === "granted";
    },
    history(subject) {
      return (bySubject.get(subject) ?? []).map((e) => ({
        subject: e.subject,
        purpose: e.purpose,
        granted: e.op === "granted",
        by: e.by,
        at: new Date(microsToMs(e.micros)),
      }));
    },
    subjects: () => bySubject.size,
    forget(subject) {
      bySubject.delete(subject);
      latest.delete(subject);
      identities.delete(subject);
    },
  };
}

/** Time order; events of the same microsecond (two nodes) by a fixed order, so every node agrees. */
function later(a: ConsentEvent, b: ConsentEvent): boolean {
  if (a.micros !== b.micros) return a.micros > b.micros;
  return `${a.purpose}:${a.op}:${a.by}` > `${b.purpose}:${b.op}:${b.by}`;
}
