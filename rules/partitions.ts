import { Redis } from "ioredis";
import type { Logger } from "pino";
import { z } from "zod";
import { redisLeases } from "../coordination/leases.ts";
import type { Scope } from "./engine.ts";
import { keyOf } from "./engine.ts";
import type { RuleMessage } from "./message.ts";

/** What the partition router needs from the rules: windows to build, records to evaluate. */
export interface PartitionHost {
  /** Builds and warms (from InfluxDB) the windows of partitions this node now owns. */
  take(parts: readonly number[]): Promise<void>;
  /** Forgets partitions this node no longer owns. */
  drop(parts: readonly number[]): void;
  /** Evaluates a routed record on its partition's windows; settles once its actions are in the action log. */
  run(part: number, msg: RuleMessage, scope: Scope | undefined): Promise<unknown>;
  /** Whether any rule or window of this scope reads such a record (else it is not routed). */
  wants(msg: RuleMessage, scope: Scope): boolean;
}

export interface PartitionConfig {
  url: string;
  node: string;
  partitions: number;
  /** How long a partition stays with a node that stopped renewing; a dead owner's partitions move after it. */
  leaseMs?: number;
  /** Key prefix of the streams and leases. */
  prefix?: string;
  /** Entries each partition's stream keeps (approximately). */
  maxLen?: number;
}

export interface PartitionRouter {
  /** Sends a record to the owners of its partitions (the device's, and the subject's). */
  route(msg: RuleMessage): void;
  /** The partitions this node owns and evaluates now. */
  owned(): number[];
  /** Records routed here that Redis has not taken yet (held while it is away). */
  unrouted(): number;
  /** Every partition's owner and backlog, read from Redis. */
  status(): Promise<PartitionStatus[]>;
  /** Deletes what the partition streams still hold about the subject (an erasure). */
  forgetSubject(subject: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * How many partitions the windows are split in: fixed for a cluster's life (every node must agree),
 * and well above any node count, so a node joining or leaving moves a small share.
 */
export const RULE_PARTITIONS = 32;
/** How often the acknowledged entries of owned partitions are trimmed away. */
const TRIM_EVERY_MS = 2000;

export interface PartitionStatus {
  partition: number;
  /** The node holding its lease; null while nobody does (an owner died, its lease not yet run out). */
  owner: string | null;
  /** Entries read by the owner and not yet acknowledged (their actions not yet stored). */
  pending: number;
  /** Entries not yet read by any owner. */
  lag: number;
}

/** The partitions' owners live in Redis: while it is away nobody can say. */
export class PartitionsUnknown extends Error {
  readonly code = "REFEED_REDIS_UNREACHABLE";
  constructor(reason: string) {
    super(`Redis is unreachable, so who owns the rule partitions is unknown now (${reason}); ask again shortly`);
  }
}

/** FNV-1a: a stable, fast spread of keys over partitions, the same on every node. */
export function partitionOf(key: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}

const GROUP = "rules";
// Whoever owns a partition reads as the same consumer, so a new owner finds the old one's unfinished entries pending.
const CONSUMER = "owner";
const SCOPE_CODES = { d: "device", s: "subject", b: undefined } as const;
const scopeCode = (scope: Scope | undefined) => (scope === "device" ? "d" : scope === "subject" ? "s" : "b");

// A routed record is parsed on arrival like any other input; what the rules read of it is checked here once.
const field = z.union([z.number(), z.boolean(), z.string()]);
const envelope = {
  device: z.string(),
  subject: z.string().optional(),
  ts: z.number(),
  tsFromDevice: z.boolean(),
  micros: z.number().optional(),
};
const routedMessage = z.discriminatedUnion("kind", [
  z.object({ ...envelope, kind: z.literal("telemetry"), metrics: z.record(z.string(), field) }),
  z.object({ ...envelope, kind: z.literal("event"), name: z.string(), props: z.record(z.string(), field.nullable()) }),
  z.object({
    ...envelope,
    kind: z.literal("feedback"),
    rating: z.number().optional(),
    text: z.string().optional(),
    sentiment: z.number().optional(),
  }),
  z.object({
    device: z.string(),
    subject: z.undefined(),
    ts: z.number(),
    tsFromDevice: z.literal(false),
    kind: z.literal("presence"),
    event: z.enum(["connect", "disconnect", "will"]),
    reason: z.string().optional(),
    transport: z.string().optional(),
  }),
]);
const entrySchema = z.object({ s: z.enum(["d", "s", "b"]), m: z.string() });

const fieldsOfInfo = (flat: unknown[]): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
};

/** A partition's mode on this node; `transition` is the only way it changes. */
type Mode = "warming" | "owned" | "releasing";
type Move = "took" | "warmed" | "shed" | "lost" | "released";
function transition(mode: Mode | undefined, move: Move): Mode | undefined {
  switch (move) {
    case "took":
      return mode ?? "warming";
    case "warmed":
      return mode === "warming" ? "owned" : mode;
    case "shed":
      return mode === "owned" ? "releasing" : mode;
    case "lost":
    case "released":
      return undefined;
  }
}

/**
 * Rule partitions on Redis. Every record a rule may read is appended to the
 * stream of its partition (the device's for device-scoped rules, the
 * customer's for subject-scoped ones); each partition is owned by one node
 * at a time under a lease, and its owner reads the stream in a consumer
 * group, evaluates, and acknowledges an entry once the actions it produced
 * are in the action log. Nodes share the partitions evenly among the live
 * ones; a dead owner's lease runs out and another node takes the partition,
 * warms its windows from InfluxDB and reads on from the entries the dead
 * one had not acknowledged. Action ids are derived from the record, so an
 * entry evaluated twice proposes the same action, which the log refuses.
 */
export async function partitionRouter(
  config: PartitionConfig,
  host: PartitionHost,
  parentLog: Logger,
): Promise<PartitionRouter> {
  const log = parentLog.child({ part: "rules", dependency: "redis" });
  const prefix = config.prefix ?? "refeed:rules";
  const leaseMs = config.leaseMs ?? 6000;
  const maxLen = String(config.maxLen ?? 200_000);
  const streamOf = (part: number) => `${prefix}:p${part}`;
  const name = (part: number) => String(part);
  // Appends wait in ioredis' queue while Redis is away (held, in order) and go out when it is back.
  const writer = new Redis(config.url, {
    lazyConnect: true,
    maxRetriesPerRequest: null,
    connectionName: `refeed:${config.node}:rules-writer`,
  });
  // Lease calls fail at once while Redis is away: a lease this node cannot renew is one it must stop using.
  const control = new Redis(config.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectionName: `refeed:${config.node}:rules-leases`,
  });
  // XREADGROUP BLOCK holds its connection.
  const reader = new Redis(config.url, {
    lazyConnect: true,
    maxRetriesPerRequest: null,
    connectionName: `refeed:${config.node}:rules-reader`,
  });
  let redisDown = false;
  const down = (err: Error) => {
    if (!redisDown && !closing)
      log.warn({ err: err.message, unrouted }, "redis unreachable: rule records are held, partitions wait for it");
    redisDown = true;
  };
  for (const conn of [writer, control, reader]) conn.on("error", down);
  control.on("ready", () => {
    if (redisDown && !closing) log.info({ unrouted }, "redis reachable: rule partitions resume");
    redisDown = false;
  });
  try {
    await Promise.all([writer.connect(), control.connect(), reader.connect()]);
  } catch (err) {
    for (const conn of [writer, control, reader]) conn.disconnect();
    throw new Error(`cannot reach Redis (REFEED_REDIS_URL) for rule partitions: ${(err as Error).message}`);
  }
  const leases = redisLeases(control, { prefix, node: config.node, ttlMs: leaseMs });
  const modes = new Map<number, Mode>();
  const move = (part: number, m: Move) => {
    const next = transition(modes.get(part), m);
    if (next) modes.set(part, next);
    else modes.delete(part);
  };
  let closing = false;
  let unrouted = 0;
  let lastRenewed = Date.now();

  const append = (part: number, scope: Scope | undefined, msg: RuleMessage) => {
    unrouted += 1;
    writer.xadd(streamOf(part), "MAXLEN", "~", maxLen, "*", "s", scopeCode(scope), "m", JSON.stringify(msg)).then(
      () => (unrouted -= 1),
      (err: Error) => {
        unrouted -= 1;
        if (!closing)
          log.error({ part, device: msg.device, err: err.message }, "a record could not be routed to its partition");
      },
    );
  };

  const ensureGroup = async (part: number) => {
    try {
      // From the stream's start: a group that does not exist yet has missed nothing it must skip.
      await control.xgroup("CREATE", streamOf(part), GROUP, "0", "MKSTREAM");
    } catch (err) {
      if (!String((err as Error).message).includes("BUSYGROUP")) throw err;
    }
  };

  /** Evaluates entries in order; each is acknowledged once its actions are stored. */
  const process = (part: number, entries: Array<[string, string[] | null]>) => {
    const done: Array<Promise<unknown>> = [];
    const ids: string[] = [];
    for (const [id, flat] of entries) {
      ids.push(id);
      if (!flat) continue; // trimmed away while pending
      const fields: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
      const entry = entrySchema.safeParse(fields);
      let parsed: ReturnType<typeof routedMessage.safeParse> | undefined;
      if (entry.success) {
        try {
          parsed = routedMessage.safeParse(JSON.parse(entry.data.m));
        } catch {
          parsed = undefined;
        }
      }
      if (!entry.success || !parsed?.success) {
        log.warn({ part, id }, "a partition entry is not a Refeed record; skipped");
        continue;
      }
      done.push(host.run(part, parsed.data as RuleMessage, SCOPE_CODES[entry.data.s]));
    }
    void Promise.allSettled(done).then(() =>
      writer
        .xack(streamOf(part), GROUP, ...ids)
        .catch((err: Error) => log.warn({ part, err: err.message }, "could not acknowledge partition entries")),
    );
  };

  /** The entries a previous owner read and did not acknowledge, first of all. */
  const drainPending = async (part: number) => {
    let from = "0";
    for (;;) {
      const answer = (await control.xreadgroup(
        "GROUP",
        GROUP,
        CONSUMER,
        "COUNT",
        500,
        "STREAMS",
        streamOf(part),
        from,
      )) as Array<[string, Array<[string, string[] | null]>]> | null;
      const entries = answer?.[0]?.[1] ?? [];
      if (entries.length === 0) return;
      process(part, entries);
      from = entries[entries.length - 1]![0];
    }
  };

  const take = async (parts: number[]) => {
    for (const part of parts) move(part, "took");
    try {
      for (const part of parts) await ensureGroup(part);
      const started = Date.now();
      await host.take(parts);
      for (const part of parts) await drainPending(part);
      for (const part of parts) move(part, "warmed");
      log.info({ parts, ms: Date.now() - started, owned: modes.size }, "rule partitions taken");
    } catch (err) {
      log.error({ parts, err: (err as Error).message }, "rule partitions could not be taken; released");
      host.drop(parts);
      for (const part of parts) move(part, "lost");
      await leases.release(parts.map(name)).catch(() => undefined);
    }
  };

  let reading: Promise<void> = Promise.resolve();
  /** The read in flight: a partition is let go only once no read of it is outstanding. */
  let cycle: Promise<void> = Promise.resolve();
  const readLoop = async () => {
    while (!closing) {
      cycle = readOnce();
      await cycle;
    }
  };
  const readOnce = async () => {
    const owned = [...modes].filter(([, m]) => m === "owned").map(([p]) => p);
    if (owned.length === 0 || redisDown) {
      await new Promise((resolve) => setTimeout(resolve, 200).unref());
      return;
    }
    try {
      const answer = (await reader.xreadgroup(
        "GROUP",
        GROUP,
        CONSUMER,
        "COUNT",
        500,
        "BLOCK",
        500,
        "STREAMS",
        ...owned.map(streamOf),
        ...owned.map(() => ">"),
      )) as Array<[string, Array<[string, string[] | null]>]> | null;
      for (const [stream, entries] of answer ?? []) {
        const part = Number(stream.slice(`${prefix}:p`.length));
        // Released meanwhile: the entries stay pending for the next owner.
        if (modes.get(part) !== "owned") continue;
        process(part, entries);
      }
    } catch (err) {
      if (closing) return;
      const message = (err as Error).message;
      // Redis came back without the groups (its data lost): they are made again, from the stream's start.
      if (message.includes("NOGROUP")) await Promise.all(owned.map((p) => ensureGroup(p).catch(() => undefined)));
      else down(err as Error);
      await new Promise((resolve) => setTimeout(resolve, 500).unref());
    }
  };

  /** One round of ownership: note alive, renew, shed above an even share, take up to it. */
  const balance = async () => {
    const members = await leases.members();
    const share = Math.ceil(config.partitions / Math.max(1, members.length));
    const held = [...modes.keys()];
    const lost = await leases.renew(held.map(name));
    lastRenewed = Date.now();
    for (const n of lost) {
      const part = Number(n);
      log.warn({ part }, "rule partition lease lost to another node");
      host.drop([part]);
      move(part, "lost");
    }
    // A releasing partition is let go on the round after it stopped being read.
    const releasing = [...modes].filter(([, m]) => m === "releasing").map(([p]) => p);
    if (releasing.length > 0) {
      await cycle;
      host.drop(releasing);
      for (const part of releasing) move(part, "released");
      await leases.release(releasing.map(name));
      log.info({ parts: releasing, owned: modes.size, share }, "rule partitions handed on to even the load");
    }
    const owned = [...modes].filter(([, m]) => m === "owned").map(([p]) => p);
    if (owned.length > share) for (const part of owned.slice(share)) move(part, "shed");
    if (modes.size < share) {
      // Nodes start their search at different places, so they rarely race for the same partition.
      const start = (Math.max(0, members.indexOf(config.node)) * share) % config.partitions;
      const candidates: string[] = [];
      for (let i = 0; i < config.partitions; i++) {
        const part = (start + i) % config.partitions;
        if (!modes.has(part)) candidates.push(name(part));
      }
      const took = await leases.acquire(candidates, share - modes.size);
      if (took.length > 0) await take(took.map(Number));
    }
  };

  /**
   * Redis keeps only the state of the moment: entries every owner has acknowledged are trimmed away
   * (XTRIM MINID at the oldest pending entry, or after the last one delivered), so a customer's records
   * do not linger there, and an erasure has only the entries still to be evaluated to look through.
   */
  const trim = async () => {
    for (const part of [...modes].filter(([, m]) => m === "owned").map(([p]) => p)) {
      const stream = streamOf(part);
      const [count, oldest] = (await control.xpending(stream, GROUP)) as [number, string | null];
      let below: string | undefined;
      if (count > 0 && oldest) below = oldest;
      else {
        const group = ((await control.xinfo("GROUPS", stream)) as unknown[][])
          .map(fieldsOfInfo)
          .find((g) => g.name === GROUP);
        const last = group?.["last-delivered-id"];
        if (typeof last === "string" && last !== "0-0") {
          const [ms, seq] = last.split("-");
          below = `${ms}-${Number(seq) + 1}`;
        }
      }
      if (below) await control.xtrim(stream, "MINID", below);
    }
  };
  const trimmer = setInterval(() => {
    if (!redisDown && !closing)
      trim().catch((err: Error) => log.debug({ err: err.message }, "partition streams not trimmed this round"));
  }, TRIM_EVERY_MS).unref();

  let balancing = Promise.resolve();
  const tick = () => {
    balancing = balancing.then(balance).catch((err: Error) => {
      if (!closing) down(err);
      // Without a renewal for a lease time, another node may own these partitions now.
      if (modes.size > 0 && Date.now() - lastRenewed > leaseMs) {
        const parts = [...modes.keys()];
        log.warn({ parts: parts.length }, "rule partition leases could not be renewed (redis unreachable): stopped");
        host.drop(parts);
        for (const part of parts) move(part, "lost");
      }
    });
  };
  tick();
  await balancing;
  const timer = setInterval(tick, Math.max(200, Math.floor(leaseMs / 6))).unref();
  reading = readLoop();

  return {
    route(msg) {
      const byDevice = host.wants(msg, "device");
      const subject = keyOf("subject", msg);
      const bySubject = subject !== undefined && host.wants(msg, "subject");
      const dp = partitionOf(msg.device, config.partitions);
      const sp = subject !== undefined ? partitionOf(subject, config.partitions) : -1;
      if (byDevice && bySubject && dp === sp) return append(dp, undefined, msg);
      if (byDevice) append(dp, "device", msg);
      if (bySubject) append(sp, "subject", msg);
    },
    owned: () => [...modes].filter(([, m]) => m === "owned").map(([p]) => p),
    unrouted: () => unrouted,
    async status() {
      const parts = [...Array(config.partitions).keys()];
      const owners = await leases.holders(parts.map(name)).catch((err: Error) => {
        throw new PartitionsUnknown(err.message);
      });
      const infos = await Promise.all(
        parts.map((part) =>
          (control.xinfo("GROUPS", streamOf(part)) as Promise<unknown[][]>).catch(() => [] as unknown[][]),
        ),
      );
      return parts.map((part) => {
        const group = infos[part]!.map(fieldsOfInfo).find((g) => g.name === GROUP);
        return {
          partition: part,
          owner: owners[part] ?? null,
          pending: Number(group?.pending ?? 0),
          lag: Number(group?.lag ?? 0),
        };
      });
    },
    async forgetSubject(subject) {
      let deleted = 0;
      for (let part = 0; part < config.partitions; part++) {
        const stream = streamOf(part);
        let from = "-";
        for (;;) {
          const entries = (await control.xrange(stream, from, "+", "COUNT", 1000)) as Array<[string, string[]]>;
          const naming: string[] = [];
          for (const [id, flat] of entries) {
            let m: string | undefined;
            for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i] === "m") m = flat[i + 1];
            if (m === undefined) continue;
            try {
              if ((JSON.parse(m) as { subject?: unknown }).subject === subject) naming.push(id);
            } catch {
              // not a Refeed record; left alone
            }
          }
          if (naming.length > 0) deleted += await control.xdel(stream, ...naming);
          if (entries.length < 1000) break;
          from = `(${entries[entries.length - 1]![0]}`;
        }
      }
      if (deleted > 0) log.info({ deleted }, "partition entries about an erased customer deleted");
      return deleted;
    },
    async close() {
      closing = true;
      clearInterval(timer);
      clearInterval(trimmer);
      await balancing.catch(() => undefined);
      await reading.catch(() => undefined);
      const parts = [...modes.keys()];
      // Hand partitions on at once rather than make the others wait out the lease.
      await leases.leave(parts.map(name)).catch(() => undefined);
      host.drop(parts);
      modes.clear();
      reader.disconnect();
      control.disconnect();
      await writer.quit().catch(() => writer.disconnect());
    },
  };
}
