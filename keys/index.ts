import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { z } from "zod";
import type { Authenticator, Principal, StaffRole } from "../auth/index.ts";
import { parseDuration } from "../config/duration.ts";
import type { ChangeFeed } from "../changes/index.ts";
import { localChangeFeed } from "../changes/local.ts";
import { rebuildAndFollow } from "../changes/rebuild.ts";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { ident, influxql } from "../store/influxql.ts";
import { createKeysView, keyChanges, KEYS_MEASUREMENT, keyRowToEvent, type KeyEntry } from "./view.ts";
import { fingerprint, generateOwnedToken, hashToken, ownerOf, verifyToken } from "../auth/tokens.ts";

/** Staff API keys are bearer tokens `rfk.<base64url key id>.<secret>`: the token names the one hash to check. */
export const KEY_PREFIX = "rfk";
export { keyChanges, type KeyEvent } from "./view.ts";
const KEY_ID = /^k-[0-9a-f]{10}$/;
const MAX_LIFETIME_MS = 3 * 365 * 86_400_000;

export const keyInputSchema = z.strictObject({
  name: z
    .string()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$/,
      "1-64 characters: letters, digits, spaces, '.', '_', '@' or '-', starting with a letter or digit",
    ),
  role: z.enum(["admin", "product", "support"], { error: "one of admin, product, support" }),
  /** A lifetime such as 90d; without it the key lasts until it is revoked. */
  expiresIn: z
    .string()
    .refine((text) => {
      const ms = parseDuration(text);
      return ms !== undefined && ms > 0 && ms <= MAX_LIFETIME_MS;
    }, "a duration such as 12h, 30d or 52w, at most 3 years")
    .optional(),
});
export type KeyInput = z.infer<typeof keyInputSchema>;

export interface ApiKey {
  readonly id: string;
  readonly name: string;
  readonly role: StaffRole;
  readonly createdAt: Date;
  readonly createdBy: string;
  readonly expiresAt: Date | undefined;
  readonly revokedAt: Date | undefined;
  readonly revokedBy: string | undefined;
}

export class KeyError extends Error {
  constructor(
    readonly code: "KEY_NOT_FOUND",
    message: string,
  ) {
    super(message);
  }
}

export interface Keys {
  /** Creates a key; its token is in this answer only, only its scrypt hash is kept. */
  create(input: KeyInput, by: string): Promise<{ key: ApiKey; token: string }>;
  /** Revokes a key for good (idempotent); its token stops working when this resolves. */
  revoke(id: string, by: string): Promise<ApiKey>;
  get(id: string): ApiKey | undefined;
  list(): ApiKey[];
  /** The key a bearer token names (whether or not it is valid), for callers that track what a key opened. */
  idOf(token: string): string | undefined;
  /** Whether the key can be used now (exists, not revoked, not expired). */
  active(id: string): boolean;
  /** Called once for each revocation that takes effect, made here or on another node; returns a function that stops listening. */
  onRevoke(listener: (id: string) => void): () => void;
  readonly authenticator: Authenticator;
  close(): Promise<void>;
}

/**
 * Staff API keys (admin, product, support), managed by the admin. Change
 * events in InfluxDB (`api_keys`) are the state; the in-memory view is
 * rebuilt from them at start and follows the feed, where this process's own
 * changes arrive too.
 */
export async function startKeys(deps: { store: Store; log: Logger; changes?: ChangeFeed }): Promise<Keys> {
  const log = deps.log.child({ part: "keys" });
  const changes = deps.changes ?? localChangeFeed(log);
  const view = createKeysView();
  // key id -> fingerprint of the last token that passed scrypt; memory only.
  const verified = new Map<string, string>();
  const listeners = new Set<(id: string) => void>();

  const following = await rebuildAndFollow({
    feed: changes,
    topic: keyChanges,
    log,
    rows: () => deps.store.query(influxql`SELECT * FROM ${ident(KEYS_MEASUREMENT)}`),
    toEvent: keyRowToEvent,
    apply: (event) => view.apply(event),
    changed(event) {
      if (event.op !== "revoked") return;
      verified.delete(event.key);
      for (const listener of listeners) {
        try {
          listener(event.key);
        } catch (err) {
          log.error({ key: event.key, err: (err as Error).message }, "key revocation listener failed");
        }
      }
    },
  });
  log.info({ keys: view.list().length }, "API keys rebuilt from InfluxDB");

  const usable = (entry: KeyEntry | undefined, now = Date.now()): entry is KeyEntry =>
    entry !== undefined && !entry.revokedAt && (!entry.expiresAt || entry.expiresAt.getTime() > now);

  const authenticator: Authenticator = {
    async principal(token): Promise<Principal | undefined> {
      const id = ownerOf(token, KEY_PREFIX);
      if (id === undefined) return undefined;
      const entry = view.get(id);
      if (!usable(entry)) return undefined;
      const print = fingerprint(token);
      if (verified.get(id) !== print) {
        if (!(await verifyToken(token, entry.tokenHash))) return undefined;
        // A revocation during the check decides.
        if (!usable(view.get(id))) return undefined;
        verified.set(id, print);
      }
      return { role: entry.role, name: `${entry.name} (key ${id})` };
    },
  };

  return {
    async create(input, by) {
      let id: string;
      do id = `k-${randomBytes(5).toString("hex")}`;
      while (view.has(id));
      const token = generateOwnedToken(KEY_PREFIX, id);
      const tokenHash = await hashToken(token);
      const micros = nextMicros();
      const lifetime = input.expiresIn ? parseDuration(input.expiresIn) : undefined;
      const expiresAt = lifetime ? Math.floor(micros / 1000) + lifetime : undefined;
      await deps.store.write([
        {
          measurement: KEYS_MEASUREMENT,
          tags: { key: id },
          fields: {
            op: "created",
            name: input.name,
            role: input.role,
            token_hash: tokenHash,
            by,
            ...(expiresAt !== undefined ? { expires_at: expiresAt } : {}),
          },
          timestamp: String(micros),
        },
      ]);
      await changes.publish(keyChanges, {
        op: "created",
        key: id,
        micros,
        name: input.name,
        role: input.role,
        tokenHash,
        by,
        ...(expiresAt !== undefined ? { expiresAt } : {}),
      });
      log.info({ key: id, role: input.role, by }, "API key created");
      return { key: publicKey(view.get(id)!), token };
    },

    async revoke(id, by) {
      const entry = view.get(id);
      if (!entry) throw new KeyError("KEY_NOT_FOUND", `no API key '${id}'`);
      if (entry.revokedAt) return publicKey(entry);
      const micros = nextMicros();
      await deps.store.write([
        { measurement: KEYS_MEASUREMENT, tags: { key: id }, fields: { op: "revoked", by }, timestamp: String(micros) },
      ]);
      await changes.publish(keyChanges, { op: "revoked", key: id, micros, by });
      log.info({ key: id, by }, "API key revoked");
      return publicKey(view.get(id)!);
    },

    get(id) {
      const entry = view.get(id);
      return entry && publicKey(entry);
    },
    list: () => view.list().map(publicKey),
    idOf(token) {
      const id = ownerOf(token, KEY_PREFIX);
      return id !== undefined && KEY_ID.test(id) ? id : undefined;
    },
    active: (id) => usable(view.get(id)),
    onRevoke(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    authenticator,
    close() {
      following.stop();
      verified.clear();
      listeners.clear();
      return Promise.resolve();
    },
  };
}

/** What callers see of a key: everything but its token hash. */
function publicKey({ id, name, role, createdAt, createdBy, expiresAt, revokedAt, revokedBy }: KeyEntry): ApiKey {
  return { id, name, role, createdAt, createdBy, expiresAt, revokedAt, revokedBy };
}
