import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { AckMessage } from "../ingest/index.ts";
import type { Registry } from "../registry/index.ts";
import type { ProposedAction } from "../rules/index.ts";
import type { Point, Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { ProfileBook, type Owner } from "./profiles.ts";
import { startDelivery, type Delivery } from "./delivery.ts";

/** How actions and state leave the platform; the broker implements it. */
export interface Publisher {
  publish(topic: string, payload: string, options: { qos: 0 | 1; retain: boolean }): Promise<void>;
}

export type ActionStatus = "proposed" | "delivered" | "applied" | "accepted" | "declined" | "failed" | "expired" | "undone";

export interface ActionRecord {
  id: string;
  rule: string;
  kind: ProposedAction["kind"];
  key: string;
  value: unknown;
  prompt: string | undefined;
  why: string;
  owner: Owner;
  device: string;
  subject: string | undefined;
  targets: string[];
  status: ActionStatus;
  /** The owner's value for the key before this action changed it; what undo restores. */
  previous: unknown;
  createdAt: number;
}

export interface Actions {
  propose(action: ProposedAction): Promise<ActionRecord>;
  ack(ack: AckMessage): void;
  lastFired(rule: string, target: string): number | undefined;
  get(id: string): ActionRecord | undefined;
  /** The personalization profile a device sees: its own keys and its subject's. */
  stateOf(device: string): Record<string, unknown>;
  /** Publishes every device's retained state (at start, when the broker's retained store is empty). */
  publishAllState(): Promise<void>;
  /** Actions waiting for their devices; the broker delivers them. */
  readonly delivery: Delivery;
  close(): Promise<void>;
}

const LOG = "action_log";

export async function startActions(deps: { store: Store; registry: Registry; publisher: Publisher; log: Logger }): Promise<Actions> {
  const { store, registry, publisher } = deps;
  const log = deps.log.child({ part: "actions" });
  const actions = new Map<string, ActionRecord>();
  const fired = new Map<string, number>();
  const profiles = await ProfileBook.rebuild(store);

  const rows = await store.query<{ time: Date; device: string; action: string; status: string; rule?: string; kind?: string; key?: string; value?: string; prompt?: string; why?: string; owner?: string; subject?: string; previous?: string }>(
    `SELECT * FROM ${LOG}`,
  );
  for (const row of rows) {
    const existing = actions.get(row.action);
    if (row.status === "proposed" && !existing) {
      const record: ActionRecord = {
        id: row.action,
        rule: row.rule ?? "",
        kind: (row.kind ?? "set") as ActionRecord["kind"],
        key: row.key ?? "",
        value: row.value === undefined || row.value === null ? undefined : JSON.parse(row.value),
        prompt: row.prompt ?? undefined,
        why: row.why ?? "",
        owner: (row.owner ?? `device:${row.device}`) as Owner,
        device: row.device,
        subject: row.subject ?? undefined,
        targets: [row.device],
        status: "proposed",
        previous: row.previous === undefined || row.previous === null ? undefined : JSON.parse(row.previous),
        createdAt: row.time.getTime(),
      };
      actions.set(record.id, record);
      const target = record.owner;
      fired.set(`${record.rule}|${target}`, Math.max(fired.get(`${record.rule}|${target}`) ?? 0, record.createdAt));
    } else if (existing) {
      if (row.status === "proposed") existing.targets.push(row.device);
      // Delivery is per device (actions/delivery.ts); the lifecycle follows the acks.
      else if (row.status !== "delivered") existing.status = row.status as ActionStatus;
    }
  }
  log.info({ actions: actions.size, profiles: profiles.size }, "action log and profiles rebuilt from InfluxDB");
  const delivery = await startDelivery({ store, publisher, log: deps.log, render: (id) => (actions.has(id) ? wire(actions.get(id)!) : undefined) });

  const devicesOf = (owner: Owner, origin: string): string[] => {
    if (owner.startsWith("device:")) return [owner.slice("device:".length)];
    const subject = owner.slice("subject:".length);
    const linked = registry.list().filter((d) => d.subject === subject && !d.revoked).map((d) => d.id);
    return [...new Set([origin, ...linked])];
  };

  const stateOf = (device: string): Record<string, unknown> => {
    const subject = registry.get(device)?.subject;
    return { ...profiles.get(`device:${device}`), ...(subject ? profiles.get(`subject:${subject}`) : {}) };
  };

  const publishState = async (device: string) => {
    const subject = registry.get(device)?.subject ?? null;
    await publisher.publish(`devices/${device}/state`, JSON.stringify({ device, subject, profile: stateOf(device), ts: Date.now() }), { qos: 1, retain: true });
  };

  const transition = (record: ActionRecord, status: ActionStatus, device: string, extra: Record<string, string> = {}): Point => {
    record.status = status;
    return { measurement: LOG, tags: { device }, fields: { action: record.id, status, ...extra }, timestamp: String(nextMicros()) };
  };

  /** Sets or clears a key for the action's owner; returns the points to store. */
  const applyToProfile = (record: ActionRecord, op: "set" | "clear", value: unknown): Point[] =>
    [profiles.change(record.owner, record.key, op, value, record.id)];

  const wire = (record: ActionRecord) =>
    JSON.stringify({
      id: record.id,
      rule: record.rule,
      kind: record.kind,
      key: record.key,
      ...(record.value !== undefined ? { value: record.value } : {}),
      ...(record.prompt !== undefined ? { prompt: record.prompt } : {}),
      why: record.why,
    });

  const refreshTargets = async (record: ActionRecord) => {
    await Promise.all(record.targets.map(publishState));
  };

  return {
    async propose(proposal) {
      const owner: Owner = proposal.scope === "subject" && proposal.subject ? `subject:${proposal.subject}` : `device:${proposal.device}`;
      const now = Date.now();
      // Recorded before any await so a burst of messages cannot slip past a cooldown.
      fired.set(`${proposal.rule}|${owner}`, now);
      const record: ActionRecord = {
        id: `act_${randomBytes(9).toString("base64url")}`,
        rule: proposal.rule,
        kind: proposal.kind,
        key: proposal.key,
        value: proposal.value,
        prompt: proposal.prompt,
        why: proposal.why,
        owner,
        device: proposal.device,
        subject: proposal.subject,
        targets: devicesOf(owner, proposal.device),
        status: "proposed",
        previous: profiles.get(owner)?.[proposal.key],
        createdAt: now,
      };
      actions.set(record.id, record);
      const points: Point[] = record.targets.map((device) => ({
        measurement: LOG,
        tags: { device },
        fields: {
          action: record.id,
          status: "proposed",
          rule: record.rule,
          kind: record.kind,
          key: record.key,
          owner,
          why: record.why,
          ...(record.value !== undefined ? { value: JSON.stringify(record.value) } : {}),
          ...(record.previous !== undefined ? { previous: JSON.stringify(record.previous) } : {}),
          ...(record.prompt !== undefined ? { prompt: record.prompt } : {}),
          ...(record.subject !== undefined ? { subject: record.subject } : {}),
        },
        timestamp: String(nextMicros()),
      }));
      // A suggestion changes nothing until the customer accepts it.
      if (record.kind === "set") points.push(...applyToProfile(record, "set", record.value));
      if (record.kind === "clear") points.push(...applyToProfile(record, "clear", undefined));
      await store.write(points);
      log.info({ action: record.id, rule: record.rule, kind: record.kind, key: record.key, owner, targets: record.targets.length }, "action proposed");
      await Promise.all(record.targets.map((device) => delivery.send(device, record.id, wire(record))));
      if (record.kind !== "suggest") await refreshTargets(record);
      return record;
    },

    ack(ack) {
      const record = actions.get(ack.action);
      if (!record || !record.targets.includes(ack.device)) {
        log.warn({ device: ack.device, action: ack.action, status: ack.status }, "ack for an action this device was not sent");
        return;
      }
      delivery.received(ack.device, ack.action);
      // A suggestion only changed the profile once it was accepted.
      const inEffect = record.kind !== "suggest" || record.status === "applied";
      const points: Point[] = [transition(record, ack.status, ack.device, ack.reason ? { reason: ack.reason } : {})];
      let changed = false;
      if (ack.status === "accepted" && record.kind === "suggest") {
        record.previous = profiles.get(record.owner)?.[record.key];
        points.push(...applyToProfile(record, "set", record.value), transition(record, "applied", ack.device));
        changed = true;
      } else if (ack.status === "undone" && inEffect) {
        points.push(...applyToProfile(record, record.previous === undefined ? "clear" : "set", record.previous));
        changed = true;
      }
      void store
        .write(points)
        .then(async () => {
          log.info({ action: record.id, device: ack.device, status: ack.status }, "action acknowledged");
          if (changed) await refreshTargets(record);
        })
        .catch((err: Error) => log.error({ action: record.id, err: err.message }, "could not record the acknowledgement"));
    },

    lastFired(rule, target) {
      return fired.get(`${rule}|${target}`);
    },
    get(id) {
      return actions.get(id);
    },
    stateOf,
    async publishAllState() {
      // Every device, also those whose profile is empty now: after a restart the retained store
      // starts empty, and a device must not keep a profile that was cleared or undone.
      await Promise.all(registry.list().filter((d) => !d.revoked).map((d) => publishState(d.id)));
    },
    delivery,
    async close() {
      await delivery.close();
    },
  };
}
