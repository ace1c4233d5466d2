import type { Logger } from "pino";
import type { ChangeFeed } from "../changes/index.ts";
import type { Point, Store } from "../store/index.ts";
import { ActionBook, type ActionRecord, type Participation } from "./book.ts";
import { startDelivery, type Delivery } from "./delivery.ts";
import { answerable, undoable } from "./lifecycle.ts";
import type { Ack, DeviceDirectory, Proposal, Publisher, TouchpointDirectory } from "./ports.ts";
import { ProfileBook, type Owner } from "./profiles.ts";
import { retainedState } from "./retained-state.ts";
import { createRecorder } from "./recorder.ts";
import { wire } from "./wire.ts";
import { postWebhook } from "./webhook.ts";

export type { ActionRecord, ActionStatus, Participation } from "./book.ts";
export type { Owner } from "./profiles.ts";
export type { Publisher } from "./ports.ts";

/** The `rule` of a change the customer (or an admin for them) made to their own profile; no rule id can take it. */
export const CUSTOMER_RULE = "@customer";

export class ActionError extends Error {
  constructor(
    readonly code: "ACTION_NOT_FOUND" | "ACTION_NOT_UNDOABLE" | "ACTION_NOT_ANSWERABLE",
    message: string,
  ) {
    super(message);
  }
}

export interface ActionsConfig {
  /** A suggestion nobody answered expires after this long. */
  suggestionTtlMs: number;
}

export interface Actions {
  propose(action: Proposal): Promise<ActionRecord>;
  /** A device's answer on devices/{id}/acks. */
  ack(ack: Ack): void;
  /** Undo from the API: restores the previous value everywhere it was set. */
  undo(id: string, by: string): Promise<ActionRecord>;
  /** A customer answers a suggestion through the API (their app), as the device it was asked on would. */
  answer(id: string, status: "accepted" | "declined", by: string): Promise<ActionRecord>;
  /**
   * The customer (or an admin for them) sets keys of their own profile, or clears
   * them (null): each key is an action of its own (rule `@customer`) that reaches
   * every touchpoint and can be undone.
   */
  setProfile(subject: string, changes: Record<string, unknown>, by: string): Promise<ActionRecord[]>;
  /** The profile of a device or subject: its own keys. */
  profileOf(owner: Owner): Record<string, unknown>;
  /** Every action about a subject, with its lifecycle. */
  actionsOf(subject: string): ActionRecord[];
  /** Waits until every action log row written so far is stored (erasure must not race it). */
  flush(): Promise<void>;
  /** Erasure: forgets the subject's actions, pending deliveries and profile in memory. */
  forgetSubject(subject: string): void;
  lastFired(rule: string, target: string): number | undefined;
  lastPrompt(target: string): number | undefined;
  declinedAt(rule: string, target: string): number | undefined;
  participation(owner: Owner): Participation;
  get(id: string): ActionRecord | undefined;
  /** The personalization profile a device sees: its own keys and its subject's. */
  stateOf(device: string): Record<string, unknown>;
  /** The retained `state` payload of a device: `{device, subject, profile, ts}`. */
  stateMessage(device: string): string;
  /** Publishes every device's retained state (at start, when the broker's retained store is empty). */
  publishAllState(): Promise<void>;
  /** Actions waiting for their devices; the broker delivers them. */
  readonly delivery: Delivery;
  close(): Promise<void>;
}

export async function startActions(
  config: ActionsConfig,
  deps: {
    store: Store;
    registry: DeviceDirectory;
    touchpoints: TouchpointDirectory;
    publisher: Publisher;
    /** Where the action log's and the profiles' changes travel, to this process's views and other nodes'. */
    feed: ChangeFeed;
    log: Logger;
  },
): Promise<Actions> {
  const { store, registry, publisher, touchpoints, feed } = deps;
  const log = deps.log.child({ part: "actions" });
  const book = await ActionBook.rebuild(store, log);
  const profiles = await ProfileBook.rebuild(store, log);
  log.info({ actions: book.actions.size, profiles: profiles.size }, "action log and profiles rebuilt from InfluxDB");
  const recorder = createRecorder({ store, log, book, profiles, feed });
  const { newId, transition, open, write } = recorder;
  const delivery = await startDelivery({
    store,
    publisher,
    log: deps.log,
    render: (id) => {
      const record = book.actions.get(id);
      return record && wire(record);
    },
    // delivery.ts writes the `delivered` row; the lifecycle view only follows it.
    onDelivered: (device, id, micros) => recorder.emitAction({ action: id, status: "delivered", device, micros }),
  });

  /** Every touchpoint of an owner: the device itself, or every device that serves the customer (linked, or in a session with them). */
  const devicesOf = (owner: Owner, origin: string | undefined): string[] => {
    if (owner.startsWith("device:")) return [owner.slice("device:".length)];
    const subject = owner.slice("subject:".length);
    const all = new Set([...(origin ? [origin] : []), ...touchpoints.devicesOf(subject)]);
    return [...all].filter((id) => registry.get(id)?.revoked === false);
  };

  const state = retainedState({ profileOf: (owner) => profiles.get(owner), touchpoints, registry, publisher, log });
  const { stateOf, stateMessage, publishSoon } = state;
  const publishState = state.publish;

  /**
   * A shared device whose session with a customer ended must not apply that
   * customer's changes later for the next person: what is still pending for it
   * of theirs is withdrawn (recorded, so a restart does not send it either).
   */
  const withdraw = (device: string, subject: string) => {
    if (touchpoints.linkedSubject(device) === subject) return;
    const points = delivery
      .pendingFor(device)
      .map(({ id }) => book.actions.get(id))
      .filter((r): r is ActionRecord => r !== undefined && r.owner === `subject:${subject}`)
      .map((record) => {
        delivery.received(device, record.id);
        return transition(record, "withdrawn", device, { reason: "session_ended" });
      });
    if (points.length === 0) return;
    write(points).then(
      () => log.info({ device, actions: points.length }, "pending actions of an ended session withdrawn"),
      (err: Error) => log.error({ device, err: err.message }, "could not record withdrawn actions"),
    );
  };

  // A new device finds its (empty) state retained on its first subscribe, like every other device.
  const stopProvisioning = registry.onChange((change) => change.op === "provisioned" && publishSoon(change.device));
  const stopFollowing = touchpoints.onChange(({ device, before }) => {
    if (registry.get(device)?.revoked !== false) return;
    if (before) withdraw(device, before);
    publishSoon(device);
  });

  /** Kept pending per device until its PUBACK, so it survives being offline and a restart. */
  const send = (devices: readonly string[], record: ActionRecord) => {
    const payload = wire(record);
    return Promise.all(devices.map((device) => delivery.send(device, record.id, payload)));
  };

  /**
   * Sets or clears the owner's key and tells every touchpoint its new state
   * while the change is being logged. The log write is not on the devices'
   * latency path; the call resolves once both are done.
   */
  const changeProfile = async (
    record: ActionRecord,
    op: "set" | "clear",
    value: unknown,
    extra: Point[],
    alsoSend: () => Promise<unknown> = async () => {},
  ) => {
    await Promise.all([
      write([...extra, recorder.profileChange(record.owner, record.key, op, value, record.id)]),
      alsoSend(),
      ...devicesOf(record.owner, record.device).map(publishState),
    ]);
  };

  const notify = async (record: ActionRecord) => {
    const result = await postWebhook(record.key, {
      action: record.id,
      rule: record.rule,
      device: record.device,
      subject: record.subject ?? null,
      message: record.value,
      why: record.why,
      at: new Date(record.createdAt).toISOString(),
    });
    const point = result.ok
      ? transition(record, "delivered", record.device)
      : transition(record, "failed", record.device, { reason: result.reason });
    await write([point]);
    if (!result.ok) log.warn({ action: record.id, rule: record.rule, reason: result.reason }, "notification failed");
  };

  const expire = () => {
    const stale = book.unanswered(Date.now() - config.suggestionTtlMs);
    if (stale.length === 0) return;
    const points = stale.map((r) => transition(r, "expired", r.device));
    write(points).then(
      () => log.info({ actions: stale.length }, "unanswered suggestions expired"),
      (err: Error) => log.error({ err: err.message }, "could not record expired suggestions"),
    );
  };
  expire();
  const sweeper = setInterval(expire, Math.min(60_000, config.suggestionTtlMs)).unref();

  return {
    async propose(proposal) {
      const owner: Owner =
        proposal.scope === "subject" && proposal.subject ? `subject:${proposal.subject}` : `device:${proposal.device}`;
      const now = Date.now();
      book.markFired(proposal.rule, owner, now);
      // A suggestion is asked once, where the pattern was seen; a change goes to every touchpoint.
      const targets =
        proposal.kind === "suggest" || proposal.kind === "notify"
          ? [proposal.device]
          : devicesOf(owner, proposal.device);
      const { record, points } = open(
        {
          id: newId(),
          rule: proposal.rule,
          kind: proposal.kind,
          key: proposal.key,
          value: proposal.value,
          prompt: proposal.prompt,
          why: proposal.why,
          owner,
          device: proposal.device,
          subject: proposal.subject,
          previous: proposal.kind === "notify" ? undefined : profiles.get(owner)?.[proposal.key],
        },
        targets,
      );
      // Every action is in the action log (GET /api/actions/:id, the export); a log line each would be the busiest line there is.
      log.debug(
        {
          action: record.id,
          rule: record.rule,
          kind: record.kind,
          key: record.kind === "notify" ? undefined : record.key,
          owner,
          targets: targets.length,
        },
        "action proposed",
      );
      if (record.kind === "notify") {
        await write(points);
        await notify(record);
        return record;
      }
      const out = () => send(targets, record);
      if (record.kind === "suggest") await Promise.all([write(points), out()]);
      else await changeProfile(record, record.kind, record.value, points, out);
      return record;
    },

    ack(ack) {
      const record = book.actions.get(ack.action);
      if (!record || !record.targets.includes(ack.device)) {
        log.warn(
          { device: ack.device, action: ack.action, status: ack.status },
          "ack for an action this device was not sent",
        );
        return;
      }
      handle(record, ack).catch((err: Error) => {
        if (err instanceof ActionError)
          log.warn({ action: record.id, device: ack.device, status: ack.status, reason: err.message }, "ack refused");
        else log.error({ action: record.id, err: err.message }, "could not record the acknowledgement");
      });
    },

    async answer(id, status, by) {
      const record = book.actions.get(id);
      if (!record) throw new ActionError("ACTION_NOT_FOUND", `no action '${id}'`);
      if (!answerable(record)) {
        throw new ActionError(
          "ACTION_NOT_ANSWERABLE",
          `action '${id}' is a ${record.kind} that is ${record.status}; only a suggestion waiting for an answer can be accepted or declined`,
        );
      }
      await handle(record, { device: record.device, action: id, status }, by);
      return record;
    },

    async setProfile(subject, changes, by) {
      const owner: Owner = `subject:${subject}`;
      const targets = devicesOf(owner, undefined);
      const records: ActionRecord[] = [];
      for (const [key, value] of Object.entries(changes)) {
        const kind = value === null ? "clear" : "set";
        const { record, points } = open(
          {
            id: newId(),
            rule: CUSTOMER_RULE,
            kind,
            key,
            value: value === null ? undefined : value,
            prompt: undefined,
            why: `${by === "customer" ? "the customer" : by} ${kind === "set" ? `set ${key} to ${JSON.stringify(value)}` : `cleared ${key}`} in their profile`,
            owner,
            device: targets[0] ?? "",
            subject,
            previous: profiles.get(owner)?.[key],
          },
          targets,
        );
        await changeProfile(record, kind, record.value, points, () => send(targets, record));
        records.push(record);
      }
      log.info({ keys: Object.keys(changes).length, targets: targets.length, by }, "profile changed by request");
      return records;
    },

    profileOf: (owner) => ({ ...profiles.get(owner) }),
    actionsOf: (subject) => book.of(subject),
    async flush() {
      await Promise.all([recorder.flush(), delivery.flush()]);
    },
    forgetSubject(subject) {
      for (const record of book.forgetSubject(subject))
        for (const device of record.targets) delivery.received(device, record.id);
      profiles.forget(`subject:${subject}`);
    },

    async undo(id, by) {
      const record = book.actions.get(id);
      if (!record) throw new ActionError("ACTION_NOT_FOUND", `no action '${id}'`);
      await undo(record, record.device, by);
      return record;
    },

    lastFired: (rule, target) => book.lastFired(rule, target),
    lastPrompt: (target) => book.lastPrompt(target),
    declinedAt: (rule, target) => book.declinedAt(rule, target),
    participation: (owner) => book.participationOf(owner),
    get: (id) => book.actions.get(id),
    stateOf,
    stateMessage,
    publishAllState: () => state.publishAll(),
    delivery,
    async close() {
      clearInterval(sweeper);
      stopFollowing();
      stopProvisioning();
      await recorder.close();
      await delivery.close();
    },
  };

  /** A device's ack (or a customer's answer through the API, `by` them) moves the action on. */
  async function handle(record: ActionRecord, ack: Ack, by?: string): Promise<void> {
    // An ack proves receipt even from a QoS 0 subscriber that sends no PUBACK.
    delivery.received(ack.device, ack.action);
    const before = record.status;
    const who = by ? { by } : {};
    if (ack.status === "accepted" && record.kind === "suggest" && (before === "proposed" || before === "delivered")) {
      record.previous = profiles.get(record.owner)?.[record.key];
      const accepted = transition(record, "accepted", ack.device, who);
      const applied = transition(record, "applied", ack.device, { previous: record.previous });
      // Every other touchpoint of the customer gets the accepted change as a set action of its own.
      const others = devicesOf(record.owner, record.device).filter((d) => !record.targets.includes(d));
      const opened =
        others.length === 0
          ? undefined
          : open(
              {
                id: newId(),
                rule: record.rule,
                key: record.key,
                value: record.value,
                owner: record.owner,
                device: record.device,
                subject: record.subject,
                previous: record.previous,
                kind: "set",
                prompt: undefined,
                why: `accepted on ${ack.device}: ${record.why}`,
              },
              others,
              record.id,
            );
      const follow = opened?.record;
      const rows = opened?.points ?? [];
      await changeProfile(
        record,
        "set",
        record.value,
        [accepted, applied, ...rows],
        async () => follow && send(others, follow),
      );
    } else if (ack.status === "undone") {
      await undo(record, ack.device, by ?? `device:${ack.device}`);
    } else {
      await write([
        transition(record, ack.status, ack.device, { ...(ack.reason ? { reason: ack.reason } : {}), ...who }),
      ]);
    }
    log.info({ action: record.id, device: ack.device, status: ack.status }, "action acknowledged");
  }

  /** Restores the owner's previous value (or clears the key) and records the undo. */
  async function undo(record: ActionRecord, device: string, by: string): Promise<void> {
    if (!undoable(record))
      throw new ActionError(
        "ACTION_NOT_UNDOABLE",
        `action '${record.id}' is ${record.status}; only an applied set, clear or accepted suggestion can be undone`,
      );
    const point = transition(record, "undone", device, { by });
    await changeProfile(record, record.previous === undefined ? "clear" : "set", record.previous, [point]);
    log.info({ action: record.id, by }, "action undone");
  }
}
