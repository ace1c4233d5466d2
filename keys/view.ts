import { z } from "zod";
import { topic } from "../changes/index.ts";
import { microsOfRow, microsToMs } from "../store/clock.ts";

const key = z.string().min(1);
const micros = z.number().int().nonnegative();
/** A change to one staff API key, as stored in `api_keys` and carried by the feed. */
export const keyEventSchema = z.discriminatedUnion("op", [
  z.object({
    op: z.literal("created"),
    key,
    micros,
    name: z.string(),
    role: z.enum(["admin", "product", "support"]),
    tokenHash: z.string().min(1),
    by: z.string(),
    /** ms since the epoch; absent: until revoked. */
    expiresAt: z.number().int().optional(),
  }),
  z.object({ op: z.literal("revoked"), key, micros, by: z.string() }),
]);
export type KeyEvent = z.infer<typeof keyEventSchema>;

export const keyChanges = topic<KeyEvent>("keys", keyEventSchema, (e) => `keys:${e.key}:${e.micros}`);

export const KEYS_MEASUREMENT = "api_keys";

/** An `api_keys` row as the event it recorded. */
export const keyRowToEvent = (row: Record<string, unknown>): unknown => ({
  op: row.op,
  key: row.key,
  micros: row.time instanceof Date ? microsOfRow(row.time) : undefined,
  name: row.name ?? row.key,
  role: row.role ?? undefined,
  tokenHash: row.token_hash ?? undefined,
  by: typeof row.by === "string" ? row.by : "unknown",
  expiresAt: typeof row.expires_at === "number" ? row.expires_at : undefined,
});

export interface KeyEntry {
  readonly id: string;
  readonly name: string;
  readonly role: "admin" | "product" | "support";
  readonly createdAt: Date;
  readonly createdBy: string;
  readonly expiresAt: Date | undefined;
  readonly revokedAt: Date | undefined;
  readonly revokedBy: string | undefined;
  readonly tokenHash: string;
}

type Created = Extract<KeyEvent, { op: "created" }>;
type Revoked = Extract<KeyEvent, { op: "revoked" }>;

export interface KeysView {
  /** Answers true when the event was new (a repeat changes nothing and answers false). */
  apply(event: KeyEvent): boolean;
  get(id: string): KeyEntry | undefined;
  has(id: string): boolean;
  list(): KeyEntry[];
}

/** The keys as their events make them: a key's creation and its first revocation, in any order. */
export function createKeysView(): KeysView {
  const facts = new Map<string, { created?: Created; revoked?: Revoked }>();
  const seen = new Set<string>();
  const entry = (id: string): KeyEntry | undefined => {
    const f = facts.get(id);
    if (!f?.created) return undefined;
    const { created, revoked } = f;
    return {
      id,
      name: created.name,
      role: created.role,
      createdAt: new Date(microsToMs(created.micros)),
      createdBy: created.by,
      expiresAt: created.expiresAt === undefined ? undefined : new Date(created.expiresAt),
      revokedAt: revoked && new Date(microsToMs(revoked.micros)),
      revokedBy: revoked?.by,
      tokenHash: created.tokenHash,
    };
  };
  return {
    apply(event) {
      const identity = keyChanges.identity(event);
      if (seen.has(identity)) return false;
      seen.add(identity);
      const f = facts.get(event.key) ?? {};
      facts.set(event.key, f);
      if (event.op === "created") {
        if (!f.created || event.micros < f.created.micros) f.created = event;
      } else if (!f.revoked || event.micros < f.revoked.micros) {
        f.revoked = event;
      }
      return true;
    },
    get: entry,
    // An id is taken as soon as any event names it, so a new key never reuses one.
    has: (id) => facts.has(id),
    list() {
      return [...facts.entries()]
        .filter(([, f]) => f.created)
        .sort(([a, fa], [b, fb]) => fa.created!.micros - fb.created!.micros || a.localeCompare(b))
        .flatMap(([id]) => entry(id) ?? []);
    },
  };
}
