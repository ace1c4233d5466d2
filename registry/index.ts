import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { z } from "zod";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { fingerprint, generateOwnedToken, hashToken, ownerOf, verifyToken } from "./token.ts";

export const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const SUBJECT_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export const provisionSchema = z.strictObject({
  id: z.string().regex(DEVICE_ID, "1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit").optional(),
  subject: z.string().regex(SUBJECT_ID, "1-128 characters: letters, digits, '.', '_', ':' or '-'").optional(),
  kind: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, "1-32 lowercase letters, digits, '_' or '-'").optional(),
});
export type ProvisionInput = z.infer<typeof provisionSchema>;

export interface Device {
  readonly id: string;
  readonly kind: string | undefined;
  /** The customer a personal device or app install belongs to (pseudonymous). */
  readonly subject: string | undefined;
  readonly createdAt: Date;
  readonly revoked: boolean;
}

export type AuthResult =
  | { ok: true; device: Device }
  | { ok: false; reason: "unknown_device" | "bad_token" | "revoked" };

export class RegistryError extends Error {
  constructor(
    readonly code: "DEVICE_EXISTS",
    message: string,
  ) {
    super(message);
  }
}

export interface Registry {
  provision(input: ProvisionInput): Promise<{ device: Device; token: string }>;
  /** MQTT: username = device id, password = token. */
  authenticate(id: string, token: string): Promise<AuthResult>;
  /** HTTP: `Authorization: Bearer <device token>`; the token names its device. */
  authenticateBearer(token: string): Promise<AuthResult>;
  get(id: string): Device | undefined;
  list(): Device[];
  close(): Promise<void>;
}

interface Entry extends Device {
  tokenHash: string;
}

const MEASUREMENT = "device_registry";

/**
 * The device registry: an in-memory view rebuilt at start from change events
 * in InfluxDB (`device_registry`), so the database stays the only state.
 */
export async function startRegistry(store: Store, log: Logger): Promise<Registry> {
  const devices = new Map<string, Entry>();
  // device id -> fingerprint of the last token that passed scrypt; memory only.
  const verified = new Map<string, string>();

  const rows = await store.query<{ time: Date; device: string; op: string; token_hash?: string; kind?: string; subject?: string }>(
    `SELECT * FROM ${MEASUREMENT}`,
  );
  for (const row of rows) {
    if (row.op === "provisioned") {
      devices.set(row.device, {
        id: row.device,
        kind: row.kind ?? undefined,
        subject: row.subject ?? undefined,
        createdAt: row.time,
        revoked: false,
        tokenHash: row.token_hash ?? "",
      });
    }
  }
  log.info({ part: "registry", devices: devices.size }, "device registry rebuilt from InfluxDB");

  const registry: Registry = {
    async provision(input) {
      const id = input.id ?? `dev-${randomBytes(6).toString("hex")}`;
      if (devices.has(id)) throw new RegistryError("DEVICE_EXISTS", `device '${id}' already exists`);
      const token = generateOwnedToken("rfd", id);
      const tokenHash = await hashToken(token);
      if (devices.has(id)) throw new RegistryError("DEVICE_EXISTS", `device '${id}' already exists`);
      const micros = nextMicros();
      const entry: Entry = {
        id,
        kind: input.kind,
        subject: input.subject,
        createdAt: new Date(Math.floor(micros / 1000)),
        revoked: false,
        tokenHash,
      };
      // Reserve the id before the write so a concurrent provision of the same id loses.
      devices.set(id, entry);
      try {
        await store.write([
          {
            measurement: MEASUREMENT,
            tags: { device: id },
            fields: {
              op: "provisioned",
              token_hash: tokenHash,
              ...(input.kind ? { kind: input.kind } : {}),
              ...(input.subject ? { subject: input.subject } : {}),
            },
            timestamp: String(micros),
          },
        ]);
      } catch (err) {
        devices.delete(id);
        throw err;
      }
      log.info({ part: "registry", device: id, kind: input.kind }, "device provisioned");
      return { device: publicView(entry), token };
    },

    async authenticate(id, token) {
      const entry = devices.get(id);
      if (!entry) return { ok: false, reason: "unknown_device" };
      if (entry.revoked) return { ok: false, reason: "revoked" };
      const print = fingerprint(token);
      if (verified.get(id) !== print) {
        if (!(await verifyToken(token, entry.tokenHash))) return { ok: false, reason: "bad_token" };
        verified.set(id, print);
      }
      return { ok: true, device: publicView(entry) };
    },

    authenticateBearer(token) {
      const id = ownerOf(token, "rfd");
      return id === undefined ? Promise.resolve({ ok: false, reason: "bad_token" }) : registry.authenticate(id, token);
    },

    get(id) {
      const entry = devices.get(id);
      return entry && publicView(entry);
    },

    list() {
      return [...devices.values()].map(publicView);
    },

    async close() {
      verified.clear();
    },
  };
  return registry;
}

function publicView(entry: Entry): Device {
  const { tokenHash: _hidden, ...device } = entry;
  return device;
}
