import { z } from "zod";
import { topic, type ChangeFeed, type View } from "../changes/index.ts";
import type { Logger } from "pino";
import { microsToMs, nextMicros } from "../store/clock.ts";

import { ERASURES } from "./names.ts";

export { ERASURES };

const id = z.string().min(1);
const micros = z.number().int().positive();

/**
 * An erasure's steps as change events. `started`: nothing about the subject
 * is admitted and their tokens stop. `flushed`: another node has written what
 * it admitted before, so the erasing node may go on. `forget`: what was in flight has landed,
 * so the views drop what they hold of them. `recorded`: the stored record,
 * which names the subject only by a salted hash. The first two carry the id
 * so every node's views can forget it; they are never stored.
 */
export const erasureEvent = z.discriminatedUnion("op", [
  z.object({ op: z.literal("started"), erasure: id, subject: id, micros }),
  z.object({ op: z.literal("forget"), erasure: id, subject: id, micros }),
  // A node other than the erasing one has written what it admitted before `started` (and says what it still spools).
  z.object({ op: z.literal("flushed"), erasure: id, node: id, spooled: z.number().int().nonnegative(), micros }),
  z.object({
    op: z.literal("recorded"),
    erasure: id,
    subjectHash: z.string(),
    salt: z.string(),
    by: z.string(),
    points: z.number().int().nonnegative(),
    micros,
  }),
]);
export type ErasureEvent = z.infer<typeof erasureEvent>;

export const erasureChanges = topic<ErasureEvent>(
  ERASURES,
  erasureEvent,
  (e) => `${ERASURES}:${e.erasure}:${e.micros}:${e.op}`,
);

/** A stored row of `erasures` as its event. */
export const erasureRow = z
  .object({
    micros,
    erasure: id,
    subject_hash: z.string(),
    salt: z.string(),
    by: z.string().nullish(),
    points: z.number().int().nonnegative().nullish(),
  })
  .transform((r): ErasureEvent => ({
    op: "recorded",
    erasure: r.erasure,
    subjectHash: r.subject_hash,
    salt: r.salt,
    by: r.by ?? "unknown",
    points: r.points ?? 0,
    micros: r.micros,
  }));

export interface ErasureRecord {
  erasure: string;
  at: Date;
  by: string;
  points: number;
  subjectHash: string;
  salt: string;
}

export interface ErasureView extends View<ErasureEvent> {
  /** Finished erasures, oldest first. */
  records(): ErasureRecord[];
  /** Subjects whose erasure started and is not recorded yet (in memory only, never stored). */
  underway(): string[];
}

const STEP = { started: 0, forget: 1, recorded: 2 } as const;

/**
 * Per erasure, its furthest step wins: a replay, or a `started` arriving
 * after the record, leaves it where it is. The subject's id is dropped once
 * the erasure is recorded.
 */
export function erasureView(): ErasureView {
  const steps = new Map<string, Exclude<ErasureEvent, { op: "flushed" }>>();
  return {
    apply(event) {
      if (event.op === "flushed") return;
      const known = steps.get(event.erasure);
      if (known && STEP[known.op] >= STEP[event.op]) return;
      steps.set(event.erasure, event);
    },
    records() {
      return [...steps.values()]
        .filter((e) => e.op === "recorded")
        .sort((a, b) => a.micros - b.micros)
        .map(({ erasure, micros: at, by, points, subjectHash, salt }) => ({
          erasure,
          at: new Date(microsToMs(at)),
          by,
          points,
          subjectHash,
          salt,
        }));
    },
    underway() {
      return [...steps.values()].flatMap((e) => (e.op === "recorded" ? [] : [e.subject]));
    },
  };
}

/** What holds something about a subject in memory, and forgets it on an erasure's step. */
export interface ForgettingViews {
  consent: { forgetSubject(subject: string): void };
  tokens: { forgetSubject(subject: string): void };
  touchpoints: { forgetSubject(subject: string): string[] };
  actions: { forgetSubject(subject: string): void };
  rules: { forgetSubject(subject: string, devices: readonly string[]): Promise<void> };
  ingest: { flush(): Promise<void>; readonly spoolDepth: { points: number } };
}

/**
 * The views forget a subject when the erasure's step reaches them on the
 * feed, made here or on another node; each `forgetSubject` is idempotent.
 */
export function followErasures(changes: ChangeFeed, views: ForgettingViews, node: string, log: Logger): () => void {
  /** What this node admitted about the subject before `started` is in InfluxDB (or says how much is spooled). */
  const confirmFlushed = async (erasure: string) => {
    await views.ingest.flush();
    await new Promise((resolve) => setImmediate(resolve));
    await changes.publish(erasureChanges, {
      op: "flushed",
      erasure,
      node,
      spooled: views.ingest.spoolDepth.points,
      micros: nextMicros(),
    });
  };
  return changes.subscribe(erasureChanges, (event, origin) => {
    if (event.op === "started") {
      views.consent.forgetSubject(event.subject);
      views.tokens.forgetSubject(event.subject);
      if (origin === "elsewhere")
        confirmFlushed(event.erasure).catch((err: Error) =>
          log.error({ erasure: event.erasure, err: err.message }, "could not confirm this node's part of an erasure"),
        );
    } else if (event.op === "forget") {
      views.touchpoints.forgetSubject(event.subject);
      views.actions.forgetSubject(event.subject);
      // The node erasing forgets the rules' windows once InfluxDB is erased (erase.ts); in a cluster the
      // subject's partition may be owned by another node, which forgets its windows of them here.
      if (origin === "elsewhere") void views.rules.forgetSubject(event.subject, []);
    }
  });
}
