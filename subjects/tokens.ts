import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Authenticator, Principal } from "../auth/index.ts";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { fingerprint, generateOwnedToken, hashToken, ownerOf, verifyToken } from "../auth/tokens.ts";

export const TOKENS = "subject_tokens";
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
 * events in `subject_tokens`, rebuilt at start. Revocation is final.
 */
export interface SubjectTokens extends Authenticator {
  issue(subject: string, label: string | undefined, by: string): Promise<{ token: string; info: SubjectToken }>;
  list(subject: string): SubjectToken[];
  revoke(subject: string, id: string, by: string): Promise<SubjectToken>;
  /** Erasure: every token of the subject stops working at once. */
  forgetSubject(subject: string): void;
  close(): Promise<void>;
}

interface Entry extends SubjectToken {
  hash: string;
}

export async function startSubjectTokens(deps: { store: Store; log: Logger }): Promise<SubjectTokens> {
  const log = deps.log.child({ part: "subjects" });
  const tokens = new Map<string, Entry>();
  // token id -> fingerprint of the token that last passed scrypt; memory only.
  const verified = new Map<string, string>();

  const rows = await deps.store.query<{
    time: Date;
    subject: string;
    op: string;
    token: string;
    token_hash?: string;
    label?: string;
    by?: string;
  }>(`SELECT * FROM ${TOKENS}`);
  for (const row of rows) {
    if (row.op === "issued") {
      tokens.set(row.token, {
        id: row.token,
        subject: row.subject,
        label: row.label ?? undefined,
        createdAt: row.time,
        createdBy: row.by ?? "unknown",
        revokedAt: undefined,
        hash: row.token_hash ?? "",
      });
    } else if (row.op === "revoked") {
      const entry = tokens.get(row.token);
      if (entry) entry.revokedAt = row.time;
    }
  }
  log.info({ tokens: tokens.size }, "subject tokens rebuilt from InfluxDB");

  const view = ({ hash: _hidden, ...info }: Entry): SubjectToken => info;

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
        if (entry.revokedAt || tokens.get(entry.id) !== entry) return undefined;
        verified.set(entry.id, print);
      }
      return { role: "subject", subject: entry.subject, name: "customer" };
    },

    async issue(subject, label, by) {
      const id = `stk_${randomBytes(8).toString("hex")}`;
      const token = generateOwnedToken(PREFIX, `${id}:${subject}`);
      const hash = await hashToken(token);
      const micros = nextMicros();
      await deps.store.write([
        {
          measurement: TOKENS,
          tags: { subject },
          fields: { op: "issued", token: id, token_hash: hash, by, ...(label ? { label } : {}) },
          timestamp: String(micros),
        },
      ]);
      const entry: Entry = {
        id,
        subject,
        label,
        createdAt: new Date(Math.floor(micros / 1000)),
        createdBy: by,
        revokedAt: undefined,
        hash,
      };
      tokens.set(id, entry);
      log.info({ token: id, by }, "subject token issued");
      return { token, info: view(entry) };
    },

    list(subject) {
      return [...tokens.values()].filter((t) => t.subject === subject).map(view);
    },

    async revoke(subject, id, by) {
      const entry = tokens.get(id);
      if (!entry || entry.subject !== subject)
        throw new TokenError("TOKEN_NOT_FOUND", `no token '${id}' for this subject`);
      if (entry.revokedAt) return view(entry);
      const micros = nextMicros();
      await deps.store.write([
        { measurement: TOKENS, tags: { subject }, fields: { op: "revoked", token: id, by }, timestamp: String(micros) },
      ]);
      entry.revokedAt = new Date(Math.floor(micros / 1000));
      verified.delete(id);
      log.info({ token: id, by }, "subject token revoked");
      return view(entry);
    },

    forgetSubject(subject) {
      for (const [id, entry] of tokens) {
        if (entry.subject !== subject) continue;
        tokens.delete(id);
        verified.delete(id);
      }
    },

    async close() {
      verified.clear();
    },
  };
}
