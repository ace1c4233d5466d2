import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { z } from "zod";
import type { Authenticator, Principal, StaffRole } from "../auth/index.ts";
import { parseDuration } from "../config/duration.ts";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { fingerprint, generateOwnedToken, hashToken, ownerOf, verifyToken } from "../auth/tokens.ts";

/** Staff API keys are bearer tokens `rfk.<base64url key id>.<secret>`: the token names the one hash to check. */
export const KEY_PREFIX = "rfk";
const MEASUREMENT = "api_keys";
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
  /** Called after a revocation is stored; returns a function that stops listening. */
  onRevoke(listener: (id: string) => void): () => void;
  readonly authenticator: Authenticator;
  close(): Promise<void>;
}

interface Entry {
  key: ApiKey;
  tokenHash: string;
}

type Row = {
  time: Date;
  key: string;
  op: string;
  name?: string;
  role?: string;
  token_hash?: string;
  by?: string;
  expires_at?: number;
};

/**
 * Staff API keys (admin, product, support), managed by the admin. Change
 * events in InfluxDB (`api_keys`) are the state; the in-memory view is
 * rebuilt from them at start.
 */
export async function startKeys(deps: { store: Store; log: Logger }): Promise<Keys> {
  const log = deps.log.child({ part: "keys" });
  const keys = new Map<string, Entry>();
  // key id -> fingerprint of the last token that passed scrypt; memory only.
  const verified = new Map<string, string>();
  const listeners = new Set<(id: string) => void>();

  for (const row of await deps.store.query<Row>(`SELECT * FROM ${MEASUREMENT}`)) {
    const entry = keys.get(row.key);
    if (row.op === "created" && row.token_hash && isRole(row.role)) {
      keys.set(row.key, {
        tokenHash: row.token_hash,
        key: {
          id: row.key,
          name: row.name ?? row.key,
          role: row.role,
          createdAt: row.time,
          createdBy: row.by ?? "unknown",
          expiresAt: typeof row.expires_at === "number" ? new Date(row.expires_at) : undefined,
          revokedAt: undefined,
          revokedBy: undefined,
        },
      });
    } else if (entry && row.op === "revoked" && !entry.key.revokedAt) {
      entry.key = { ...entry.key, revokedAt: row.time, revokedBy: row.by ?? "unknown" };
    }
  }
  log.info({ keys: keys.size }, "API keys rebuilt from InfluxDB");

  const usable = (entry: Entry | undefined, now = Date.now()): entry is Entry =>
    entry !== undefined && !entry.key.revokedAt && (!entry.key.expiresAt || entry.key.expiresAt.getTime() > now);

  const authenticator: Authenticator = {
    async principal(token): Promise<Principal | undefined> {
      const id = ownerOf(token, KEY_PREFIX);
      if (id === undefined) return undefined;
      const entry = keys.get(id);
      if (!usable(entry)) return undefined;
      const print = fingerprint(token);
      if (verified.get(id) !== print) {
        if (!(await verifyToken(token, entry.tokenHash))) return undefined;
        // A revocation during the check decides.
        if (!usable(keys.get(id))) return undefined;
        verified.set(id, print);
      }
      return { role: entry.key.role, name: `${entry.key.name} (key ${id})` };
    },
  };

  return {
    async create(input, by) {
      let id: string;
      do id = `k-${randomBytes(5).toString("hex")}`;
      while (keys.has(id));
      const token = generateOwnedToken(KEY_PREFIX, id);
      const tokenHash = await hashToken(token);
      const micros = nextMicros();
      const createdAt = new Date(Math.floor(micros / 1000));
      const lifetime = input.expiresIn ? parseDuration(input.expiresIn) : undefined;
      const expiresAt = lifetime ? new Date(createdAt.getTime() + lifetime) : undefined;
      await deps.store.write([
        {
          measurement: MEASUREMENT,
          tags: { key: id },
          fields: {
            op: "created",
            name: input.name,
            role: input.role,
            token_hash: tokenHash,
            by,
            ...(expiresAt ? { expires_at: expiresAt.getTime() } : {}),
          },
          timestamp: String(micros),
        },
      ]);
      const key: ApiKey = {
        id,
        name: input.name,
        role: input.role,
        createdAt,
        createdBy: by,
        expiresAt,
        revokedAt: undefined,
        revokedBy: undefined,
      };
      keys.set(id, { key, tokenHash });
      log.info({ key: id, role: input.role, by }, "API key created");
      return { key, token };
    },

    async revoke(id, by) {
      const entry = keys.get(id);
      if (!entry) throw new KeyError("KEY_NOT_FOUND", `no API key '${id}'`);
      if (entry.key.revokedAt) return entry.key;
      const micros = nextMicros();
      await deps.store.write([
        { measurement: MEASUREMENT, tags: { key: id }, fields: { op: "revoked", by }, timestamp: String(micros) },
      ]);
      entry.key = { ...entry.key, revokedAt: new Date(Math.floor(micros / 1000)), revokedBy: by };
      verified.delete(id);
      log.info({ key: id, by }, "API key revoked");
      for (const listener of listeners) {
        try {
          listener(id);
        } catch (err) {
          log.error({ key: id, err: (err as Error).message }, "key revocation listener failed");
        }
      }
      return entry.key;
    },

    get: (id) => keys.get(id)?.key,
    list: () => [...keys.values()].map((e) => e.key),
    idOf(token) {
      const id = ownerOf(token, KEY_PREFIX);
      return id !== undefined && KEY_ID.test(id) ? id : undefined;
    },
    active: (id) => usable(keys.get(id)),
    onRevoke(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    authenticator,
    async close() {
      verified.clear();
      listeners.clear();
    },
  };
}

function isRole(role: unknown): role is StaffRole {
  return role === "admin" || role === "product" || role === "support";
}
