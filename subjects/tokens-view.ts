import { z } from "zod";
import { topic, type View } from "../changes/index.ts";
import { microsToMs } from "../store/clock.ts";

export const TOKENS = "subject_tokens";

const micros = z.number().int().positive();

/** A customer token's changes: what `subject_tokens` stores and the feed carries, one schema for both. */
export const tokenEvent = z.discriminatedUnion("op", [
  z.object({
    op: z.literal("issued"),
    token: z.string().min(1),
    subject: z.string().min(1),
    hash: z.string(),
    label: z.string().optional(),
    by: z.string(),
    micros,
  }),
  z.object({ op: z.literal("revoked"), token: z.string().min(1), subject: z.string().min(1), by: z.string(), micros }),
]);
export type TokenEvent = z.infer<typeof tokenEvent>;

export const tokenChanges = topic<TokenEvent>(TOKENS, tokenEvent, (e) => `${TOKENS}:${e.token}:${e.micros}`);

/** A stored row of `subject_tokens` as its change event; a row that is not one is refused here, at the edge. */
export const tokenRow = z
  .object({
    micros,
    op: z.enum(["issued", "revoked"]),
    token: z.string(),
    subject: z.string(),
    token_hash: z.string().nullish(),
    label: z.string().nullish(),
    by: z.string().nullish(),
  })
  .transform((r): TokenEvent =>
    r.op === "issued"
      ? {
          op: "issued",
          token: r.token,
          subject: r.subject,
          hash: r.token_hash ?? "",
          ...(r.label ? { label: r.label } : {}),
          by: r.by ?? "unknown",
          micros: r.micros,
        }
      : { op: "revoked", token: r.token, subject: r.subject, by: r.by ?? "unknown", micros: r.micros },
  );

export interface TokenEntry {
  id: string;
  subject: string;
  label: string | undefined;
  createdAt: Date;
  createdBy: string;
  revokedAt: Date | undefined;
  hash: string;
}

export interface TokenView extends View<TokenEvent> {
  get(id: string): TokenEntry | undefined;
  all(): IterableIterator<TokenEntry>;
  readonly size: number;
  /** Erasure: the subject's tokens are gone, and a replay of their old events does not bring them back. */
  forgetSubject(subject: string): void;
}

/**
 * Tokens by id. A token's state is its issue plus its first revocation, kept
 * per event kind, so the two may arrive in either order and a replay sets
 * what is already set.
 */
export function tokenView(): TokenView {
  const issued = new Map<string, Extract<TokenEvent, { op: "issued" }>>();
  const revoked = new Map<string, number>();
  const entries = new Map<string, TokenEntry>();
  const forgotten = new Set<string>();

  const derive = (id: string) => {
    const issue = issued.get(id);
    if (!issue) return;
    const at = revoked.get(id);
    entries.set(id, {
      id,
      subject: issue.subject,
      label: issue.label,
      createdAt: new Date(microsToMs(issue.micros)),
      createdBy: issue.by,
      revokedAt: at === undefined ? undefined : new Date(microsToMs(at)),
      hash: issue.hash,
    });
  };

  return {
    apply(event) {
      if (forgotten.has(event.token)) return;
      if (event.op === "issued") {
        if (issued.has(event.token)) return;
        issued.set(event.token, event);
      } else {
        const at = revoked.get(event.token);
        if (at !== undefined && at <= event.micros) return;
        revoked.set(event.token, event.micros);
      }
      derive(event.token);
    },
    get: (id) => entries.get(id),
    all: () => entries.values(),
    get size() {
      return entries.size;
    },
    forgetSubject(subject) {
      for (const [id, entry] of entries) {
        if (entry.subject !== subject) continue;
        forgotten.add(id);
        entries.delete(id);
        issued.delete(id);
        revoked.delete(id);
      }
    },
  };
}
