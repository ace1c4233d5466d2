import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { z } from "zod";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { fingerprint, generateOwnedToken, hashToken, ownerOf, verifyToken } from "../auth/tokens.ts";

export const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const SUBJECT_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export const provisionSchema = z.strictObject({
  id: z
    .string()
    .regex(DEVICE_ID, "1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit")
    .optional(),
  subject: z.string().regex(SUBJECT_ID, "1-128 characters: letters, digits, '.', '_', ':' or '-'").optional(),
  kind: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, "1-32 lowercase letters, digits, '_' or '-'")
    .optional(),
});
export type ProvisionInput = z.infer<typeof provisionSchema>;

export interface Device {
  readonly id: string;
  readonly kind: string | undefined;
  readonly createdAt: Date;
  readonly revoked: boolean;
  readonly revokedAt: Date | undefined;
  /** When the current token was issued by a rotation (undefined: the token from provisioning). */
  readonly rotatedAt: Date | undefined;
}

/** What changed, for parts that must act at once (the broker closes a revoked device's sessions). */
export interface RegistryChange {
  op: "provisioned" | "rotated" | "revoked";
  device: string;
}

export type AuthResult =
  { ok: true; device: Device } | { ok: false; reason: "unknown_device" | "bad_token" | "revoked" };

export class RegistryError extends Error {
  constructor(
    readonly code: "DEVICE_EXISTS" | "NOT_FOUND" | "REVOKED",
    message: string,
  ) {
    super(message);
  }
}

export interface Registry {
  /** The device's link to a customer (`subject` of the API call) is kept by subjects/, not here. */
  provision(input: Omit<ProvisionInput, "subject">): Promise<{ device: Device; token: string }>;
  /** MQTT: username = device id, password = token. */
  authenticate(id: string, token: string): Promise<AuthResult>;
  /** HTTP: `Authorization: Bearer <device token>`; the token names its device. */
  authenticateBearer(token: string): Promise<AuthResult>;
  /** Issues a new token; the old one stops working when this resolves. Answers the token once. */
  rotate(id: string): Promise<{ device: Device; token: string }>;
  /** Revokes a device for good (idempotent); its token stops working when this resolves. */
  revoke(id: string): Promise<Device>;
  /** Called after each change is stored and in effect; returns a function that stops listening. */
  onChange(listener: (change: RegistryChange) => void): () => void;
  get(id: string): Device | undefined;
  list(): Device[];
  close(): Promise<void>;
}

interface Entry {
  id: string;
  kind: string | undefined;
  createdAt: Date;
  revoked: boolean;
  revokedAt: Date | undefined;
  rotatedAt: Date | undefined;
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
  const listeners = new Set<(change: RegistryChange) => void>();
  // Changes to one device run one at a time, so two rotations cannot interleave.
  const serial = new Map<string, Promise<unknown>>();
  const oneAtATime = <T>(id: string, work: () => Promise<T>): Promise<T> => {
    const run = (serial.get(id) ?? Promise.resolve()).then(work, work);
    const tail = run.catch(() => undefined);
    serial.set(id, tail);
    void tail.then(() => serial.get(id) === tail && serial.delete(id));
    return run;
  };
  const announce = (change: RegistryChange) => {
    for (const listener of listeners) {
      try {
        listener(change);
      } catch (err) {
        log.error(
          { part: "registry", device: change.device, op: change.op, err: (err as Error).message },
          "registry change listener failed",
        );
      }
    }
  };
  const existing = (id: string): Entry => {
    const entry = devices.get(id);
    if (!entry) throw new RegistryError("NOT_FOUND", `no device '${id}'`);
    return entry;
  };

  const rows = await store.query<{ time: Date; device: string; op: string; token_hash?: string; kind?: string }>(
    `SELECT * FROM ${MEASUREMENT}`,
  );
  for (const row of rows) {
    const entry = devices.get(row.device);
    if (row.op === "provisioned") {
      devices.set(row.device, {
        id: row.device,
        kind: row.kind ?? undefined,
        createdAt: row.time,
        revoked: false,
        revokedAt: undefined,
        rotatedAt: undefined,
        tokenHash: row.token_hash ?? "",
      });
    } else if (entry && row.op === "rotated" && row.token_hash) {
      entry.tokenHash = row.token_hash;
      entry.rotatedAt = row.time;
    } else if (entry && row.op === "revoked") {
      entry.revoked = true;
      entry.revokedAt = row.time;
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
        createdAt: new Date(Math.floor(micros / 1000)),
        revoked: false,
        revokedAt: undefined,
        rotatedAt: undefined,
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
            },
            timestamp: String(micros),
          },
        ]);
      } catch (err) {
        devices.delete(id);
        throw err;
      }
      log.info({ part: "registry", device: id, kind: input.kind }, "device provisioned");
      announce({ op: "provisioned", device: id });
      return { device: publicView(entry), token };
    },

    rotate(id) {
      return oneAtATime(id, async () => {
        if (existing(id).revoked)
          throw new RegistryError("REVOKED", `device '${id}' is revoked; provision a new device instead`);
        const token = generateOwnedToken("rfd", id);
        const tokenHash = await hashToken(token);
        const entry = existing(id);
        if (entry.revoked)
          throw new RegistryError("REVOKED", `device '${id}' is revoked; provision a new device instead`);
        const micros = nextMicros();
        await store.write([
          {
            measurement: MEASUREMENT,
            tags: { device: id },
            fields: { op: "rotated", token_hash: tokenHash },
            timestamp: String(micros),
          },
        ]);
        entry.tokenHash = tokenHash;
        entry.rotatedAt = new Date(Math.floor(micros / 1000));
        verified.delete(id);
        log.info({ part: "registry", device: id }, "device token rotated");
        announce({ op: "rotated", device: id });
        return { device: publicView(entry), token };
      });
    },

    revoke(id) {
      return oneAtATime(id, async () => {
        const entry = existing(id);
        if (entry.revoked) return publicView(entry);
        const micros = nextMicros();
        await store.write([
          { measurement: MEASUREMENT, tags: { device: id }, fields: { op: "revoked" }, timestamp: String(micros) },
        ]);
        entry.revoked = true;
        entry.revokedAt = new Date(Math.floor(micros / 1000));
        verified.delete(id);
        log.info({ part: "registry", device: id }, "device revoked");
        announce({ op: "revoked", device: id });
        return publicView(entry);
      });
    },

    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    async authenticate(id, token) {
      const entry = devices.get(id);
      if (!entry) return { ok: false, reason: "unknown_device" };
      if (entry.revoked) return { ok: false, reason: "revoked" };
      const print = fingerprint(token);
      if (verified.get(id) !== print) {
        const hash = entry.tokenHash;
        const valid = await verifyToken(token, hash);
        // A rotation or revocation during the check decides: the answer must hold for the current token.
        if (entry.revoked) return { ok: false, reason: "revoked" };
        if (entry.tokenHash !== hash) return registry.authenticate(id, token);
        if (!valid) return { ok: false, reason: "bad_token" };
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
      listeners.clear();
    },
  };
  return registry;
}

function publicView(entry: Entry): Device {
  const { tokenHash: _hidden, ...device } = entry;
  return device;
}
