import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { z } from "zod";
import type { ChangeFeed, Origin } from "../changes/index.ts";
import { localChangeFeed } from "../changes/local.ts";
import { rebuildAndFollow } from "../changes/rebuild.ts";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import {
  createRegistryView,
  REGISTRY_MEASUREMENT,
  registryChanges,
  registryRowToEvent,
  type DeviceEntry,
  type RegistryEvent,
} from "./view.ts";
import { registryRows } from "./queries.ts";
import { fingerprint, generateOwnedToken, hashToken, ownerOf, verifyToken } from "../auth/tokens.ts";

import { DEVICE_ID, SUBJECT_ID } from "./ids.ts";

export { DEVICE_ID, SUBJECT_ID };

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

export { registryChanges, type RegistryEvent } from "./view.ts";

/** What changed, for parts that must act at once (the broker closes a revoked device's sessions). */
export interface RegistryChange {
  op: "provisioned" | "rotated" | "revoked";
  device: string;
  /** Made on this node: it acts on it once for the cluster (other nodes' views only follow). */
  here: boolean;
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
  /**
   * Called once for each change that takes effect in this view, made here or
   * on another node (it follows the feed); returns a function that stops listening.
   */
  onChange(listener: (change: RegistryChange) => void): () => void;
  get(id: string): Device | undefined;
  list(): Device[];
  close(): Promise<void>;
}

/**
 * The device registry: an in-memory view rebuilt at start from change events
 * in InfluxDB (`device_registry`), so the database stays the only state. A
 * change is written, then published on the feed, and reaches the view through
 * the view's `apply` like a change made on another node.
 */
export async function startRegistry(
  store: Store,
  log: Logger,
  changes: ChangeFeed = localChangeFeed(log),
): Promise<Registry> {
  const view = createRegistryView();
  // Ids being provisioned here, not yet in the view: reserved before the write so a
  // concurrent provision of the same id loses, and released once the view has it.
  const reserved = new Set<string>();
  // device id -> fingerprint of the last token that passed scrypt, with the hash it passed; memory only.
  const verified = new Map<string, { print: string; hash: string }>();
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
  const announce = (event: RegistryEvent, origin: Origin) => {
    const change: RegistryChange = { op: event.op, device: event.device, here: origin === "here" };
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
  const existing = (id: string): DeviceEntry => {
    const entry = view.get(id);
    if (!entry) throw new RegistryError("NOT_FOUND", `no device '${id}'`);
    return entry;
  };
  const record = async (event: RegistryEvent) => {
    await store.write([
      {
        measurement: REGISTRY_MEASUREMENT,
        tags: { device: event.device },
        fields: {
          op: event.op,
          ...(event.op !== "revoked" ? { token_hash: event.tokenHash } : {}),
          ...(event.op === "provisioned" && event.kind ? { kind: event.kind } : {}),
        },
        timestamp: String(event.micros),
      },
    ]);
    await changes.publish(registryChanges, event);
  };

  const following = await rebuildAndFollow({
    feed: changes,
    topic: registryChanges,
    log,
    rows: () => store.query(registryRows()),
    toEvent: registryRowToEvent,
    apply: (event) => view.apply(event),
    changed: announce,
  });
  log.info({ part: "registry", devices: view.list().length }, "device registry rebuilt from InfluxDB");

  const registry: Registry = {
    async provision(input) {
      const id = input.id ?? `dev-${randomBytes(6).toString("hex")}`;
      const taken = () => view.get(id) !== undefined || reserved.has(id);
      if (taken()) throw new RegistryError("DEVICE_EXISTS", `device '${id}' already exists`);
      const token = generateOwnedToken("rfd", id);
      const tokenHash = await hashToken(token);
      if (taken()) throw new RegistryError("DEVICE_EXISTS", `device '${id}' already exists`);
      reserved.add(id);
      try {
        await record({ op: "provisioned", device: id, micros: nextMicros(), kind: input.kind, tokenHash });
      } finally {
        reserved.delete(id);
      }
      log.info({ part: "registry", device: id, kind: input.kind }, "device provisioned");
      return { device: publicView(existing(id)), token };
    },

    rotate(id) {
      return oneAtATime(id, async () => {
        if (existing(id).revoked)
          throw new RegistryError("REVOKED", `device '${id}' is revoked; provision a new device instead`);
        const token = generateOwnedToken("rfd", id);
        const tokenHash = await hashToken(token);
        if (existing(id).revoked)
          throw new RegistryError("REVOKED", `device '${id}' is revoked; provision a new device instead`);
        await record({ op: "rotated", device: id, micros: nextMicros(), tokenHash });
        log.info({ part: "registry", device: id }, "device token rotated");
        return { device: publicView(existing(id)), token };
      });
    },

    revoke(id) {
      return oneAtATime(id, async () => {
        const entry = existing(id);
        if (entry.revoked) return publicView(entry);
        await record({ op: "revoked", device: id, micros: nextMicros() });
        log.info({ part: "registry", device: id }, "device revoked");
        return publicView(existing(id));
      });
    },

    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    async authenticate(id, token) {
      const entry = view.get(id);
      if (!entry) return { ok: false, reason: "unknown_device" };
      if (entry.revoked) return { ok: false, reason: "revoked" };
      const print = fingerprint(token);
      const cached = verified.get(id);
      // The cache holds for the hash it was checked against: a rotation (from any node) voids it.
      if (cached?.print !== print || cached.hash !== entry.tokenHash) {
        const hash = entry.tokenHash;
        const valid = await verifyToken(token, hash);
        // A rotation or revocation during the check decides: the answer must hold for the current token.
        const now = view.get(id);
        if (!now || now.revoked) return { ok: false, reason: "revoked" };
        if (now.tokenHash !== hash) return registry.authenticate(id, token);
        if (!valid) return { ok: false, reason: "bad_token" };
        verified.set(id, { print, hash });
      }
      return { ok: true, device: publicView(view.get(id) ?? entry) };
    },

    authenticateBearer(token) {
      const id = ownerOf(token, "rfd");
      return id === undefined ? Promise.resolve({ ok: false, reason: "bad_token" }) : registry.authenticate(id, token);
    },

    get(id) {
      const entry = view.get(id);
      return entry && publicView(entry);
    },

    list() {
      return view.list().map(publicView);
    },

    close() {
      following.stop();
      verified.clear();
      listeners.clear();
      return Promise.resolve();
    },
  };
  return registry;
}

/** What callers see of a device: everything but its token hash. */
function publicView({ id, kind, createdAt, revoked, revokedAt, rotatedAt }: DeviceEntry): Device {
  return { id, kind, createdAt, revoked, revokedAt, rotatedAt };
}
