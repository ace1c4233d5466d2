import { z } from "zod";
import { topic } from "../changes/index.ts";
import { microsOfRow, microsToMs } from "../store/clock.ts";
import { DEVICE_REGISTRY } from "./queries.ts";

/** A change to one device, as stored in `device_registry` and carried by the feed. */
const micros = z.number().int().nonnegative();
const device = z.string().min(1);
export const registryEventSchema = z.discriminatedUnion("op", [
  z.object({ op: z.literal("provisioned"), device, micros, kind: z.string().optional(), tokenHash: z.string().min(1) }),
  z.object({ op: z.literal("rotated"), device, micros, tokenHash: z.string().min(1) }),
  z.object({ op: z.literal("revoked"), device, micros }),
]);
export type RegistryEvent = z.infer<typeof registryEventSchema>;

export const registryChanges = topic<RegistryEvent>(
  "registry",
  registryEventSchema,
  (e) => `registry:${e.device}:${e.micros}`,
);

export const REGISTRY_MEASUREMENT = DEVICE_REGISTRY;

/** A `device_registry` row as the event it recorded (the point time is the event's time). */
export const registryRowToEvent = (row: Record<string, unknown>): unknown => ({
  op: row.op,
  device: row.device,
  micros: row.time instanceof Date ? microsOfRow(row.time) : undefined,
  kind: row.kind ?? undefined,
  tokenHash: row.token_hash ?? undefined,
});

export interface DeviceEntry {
  readonly id: string;
  readonly kind: string | undefined;
  readonly createdAt: Date;
  readonly revoked: boolean;
  readonly revokedAt: Date | undefined;
  readonly rotatedAt: Date | undefined;
  readonly tokenHash: string;
}

interface Facts {
  provisioned?: { micros: number; kind: string | undefined; tokenHash: string };
  rotation?: { micros: number; tokenHash: string };
  revokedMicros?: number;
}

export interface RegistryView {
  /** Answers true when the event was new (a repeat changes nothing and answers false). */
  apply(event: RegistryEvent): boolean;
  get(id: string): DeviceEntry | undefined;
  list(): DeviceEntry[];
}

/**
 * The devices as their change events make them. Each device keeps the facts
 * its events state (its provisioning, its newest rotation, its first
 * revocation), so events can arrive in any order and twice.
 */
export function createRegistryView(): RegistryView {
  const facts = new Map<string, Facts>();
  const seen = new Set<string>();
  // The fleet view lists every device on each refresh: sorted once per change, not per call.
  let listed: DeviceEntry[] | undefined;
  const entry = (id: string, f: Facts): DeviceEntry | undefined => {
    if (!f.provisioned) return undefined;
    return {
      id,
      kind: f.provisioned.kind,
      createdAt: new Date(microsToMs(f.provisioned.micros)),
      revoked: f.revokedMicros !== undefined,
      revokedAt: f.revokedMicros === undefined ? undefined : new Date(microsToMs(f.revokedMicros)),
      rotatedAt: f.rotation && new Date(microsToMs(f.rotation.micros)),
      tokenHash: f.rotation?.tokenHash ?? f.provisioned.tokenHash,
    };
  };
  return {
    apply(event) {
      const identity = registryChanges.identity(event);
      if (seen.has(identity)) return false;
      seen.add(identity);
      listed = undefined;
      const f = facts.get(event.device) ?? {};
      facts.set(event.device, f);
      if (event.op === "provisioned") {
        if (!f.provisioned || event.micros < f.provisioned.micros)
          f.provisioned = { micros: event.micros, kind: event.kind, tokenHash: event.tokenHash };
      } else if (event.op === "rotated") {
        if (!f.rotation || event.micros > f.rotation.micros)
          f.rotation = { micros: event.micros, tokenHash: event.tokenHash };
      } else if (f.revokedMicros === undefined || event.micros < f.revokedMicros) {
        f.revokedMicros = event.micros;
      }
      return true;
    },
    get(id) {
      const f = facts.get(id);
      return f && entry(id, f);
    },
    list() {
      // Provisioning order, as the devices were listed before, whatever order their events came in.
      listed ??= [...facts]
        .filter(([, f]) => f.provisioned)
        .sort(([a, fa], [b, fb]) => fa.provisioned!.micros - fb.provisioned!.micros || a.localeCompare(b))
        .flatMap(([id, f]) => entry(id, f) ?? []);
      return [...listed];
    },
  };
}
