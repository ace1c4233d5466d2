import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Authenticator, Principal } from "../auth/index.ts";
import type { Store } from "../store/index.ts";
import { microsOfRow, nextMicros } from "../store/clock.ts";
import type { ChangeFeed } from "../changes/index.ts";
import { localChangeFeed } from "../changes/local.ts";
import { TOKENS, tokenChanges, tokenRow, tokenView, type TokenEntry, type TokenEvent } from "./tokens-view.ts";
import { fingerprint, generateOwnedToken, hashToken, ownerOf, verifyToken } from "../auth/tokens.ts";
import { ident, influxql } from "../store/influxql.ts";

export { TOKENS } from "./tokens-view.ts";
const PREFIX = "rfs";

export interface SubjectToken {
  id: string;
  subject: string;
  label: string | undefined;
  createdAt: Date;
  createdBy: string;
  revokedAt: Date | undefined;
}

export class TokenError extends Error {
  constructor(
    readonly code: "TOKEN_NOT_FOUND",
    message: string,
  ) {
    super(message);
  }
}

/**
 * A customer's bearer tokens, one per app install or session of theirs. A
 * token names its own id and subject (`rfs.<base64url "id:subject">.<secret>`),
 * so checking one costs a single scrypt; only the hash is kept, as change
 * events in `subject_tokens`, rebuilt at start and then followed on the change
 * feed (./tokens-view.ts). Revocation is final.
 */
export interface SubjectTokens extends Authenticator {
  issue(subject: string, label: string | undefined, by: string): Promise<{ token: string; info: SubjectToken }>;
  list(subject: string): SubjectToken[];
  revoke(subject: string, id: string, by: string): Promise<SubjectToken>;
  /** Erasure: every token of the subject stops working at once. */
  forgetSubject(subject: string): void;
  close(): Promise<void>;
}

export async function startSubjectTokens(deps: {
  store: Store;
  log: Logger;
  changes?: ChangeFeed;
}): Promise<SubjectTokens> {
  const log = deps.log.child({ part: "subjects" });
  // Alone (a test, a tool) the tokens still take their changes through a feed, a private one.
  const changes = deps.changes ?? localChangeFeed(deps.log);
  const tokens = tokenView();
  // token id -> fingerprint of the token that last passed scrypt; memory only.
  const verified = new Map<string, string>();

  // Following first, then the rebuild: a change arriving meanwhile is not lost, and meeting it twice is harmless.
  const stop = changes.subscribe(tokenChanges, (event) => tokens.apply(event));
  const rebuild = async () => {
    const rows = await deps.store.query(influxql`SELECT * FROM ${ident(TOKENS)}`);
    for (const row of rows) {
      const parsed = tokenRow.safeParse({ ...row, micros: microsOfRow(row.time) });
      if (parsed.success) tokens.apply(parsed.data);
      else log.warn({ measurement: TOKENS, issue: parsed.error.issues[0]?.message }, "unreadable token row skipped");
    }
  };
  await rebuild();
  log.info({ tokens: tokens.size }, "subject tokens rebuilt from InfluxDB");
  const stopResync = changes.onResync?.(rebuild);

  const view = (entry: TokenEntry): SubjectToken => {
    const { id, subject, label, createdAt, createdBy, revokedAt } = entry;
    return { id, subject, label, createdAt, createdBy, revokedAt };
  };
  // Stored first, then announced: the view (here and on every node) changes only through the feed.
  const record = async (event: TokenEvent) => {
    const { op, token, by, micros } = event;
    const extra =
      event.op === "issued" ? { token_hash: event.hash, ...(event.label ? { label: event.label } : {}) } : {};
    await deps.store.write([
      {
        measurement: TOKENS,
        tags: { subject: event.subject },
        fields: { op, token, by, ...extra },
        timestamp: String(micros),
      },
    ]);
    await changes.publish(tokenChanges, event);
  };

  return {
    async principal(token): Promise<Principal | undefined> {
      const owner = ownerOf(token, PREFIX);
      if (owner === undefined) return undefined;
      const at = owner.indexOf(":");
      const entry = tokens.get(owner.slice(0, at));
      if (!entry || entry.revokedAt || entry.subject !== owner.slice(at + 1)) return undefined;
      const print = fingerprint(token);
      if (verified.get(entry.id) !== print) {
        if (!(await verifyToken(token, entry.hash))) return undefined;
        // Revoked or erased while scrypt ran: the answer must hold for now.
        const now = tokens.get(entry.id);
        if (!now || now.revokedAt) return undefined;
        verified.set(entry.id, print);
      }
      return { role: "subject", subject: entry.subject, name: "customer" };
    },

    async issue(subject, label, by) {
      const id = `stk_${randomBytes(8).toString("hex")}`;
      const token = generateOwnedToken(PREFIX, `${id}:${subject}`);
      const hash = await hashToken(token);
      await record({ op: "issued", token: id, subject, hash, ...(label ? { label } : {}), by, micros: nextMicros() });
      const entry = tokens.get(id);
      if (!entry) throw new Error(`token ${id} was stored but did not reach the view`);
      log.info({ token: id, by }, "subject token issued");
      return { token, info: view(entry) };
    },

    list(subject) {
      return [...tokens.all()].filter((t) => t.subject === subject).map(view);
    },

    async revoke(subject, id, by) {
      const entry = tokens.get(id);
      if (!entry || entry.subject !== subject)
        throw new TokenError("TOKEN_NOT_FOUND", `no token '${id}' for this subject`);
      if (entry.revokedAt) return view(entry);
      await record({ op: "revoked", token: id, subject, by, micros: nextMicros() });
      verified.delete(id);
      log.info({ token: id, by }, "subject token revoked");
      return view(tokens.get(id) ?? entry);
    },

    forgetSubject(subject) {
      for (const entry of tokens.all()) if (entry.subject === subject) verified.delete(entry.id);
      tokens.forgetSubject(subject);
    },

    close() {
      stop();
      stopResync?.();
      verified.clear();
      return Promise.resolve();
    },
  };
}
