import type { Logger } from "pino";
import type { Point } from "../store/index.ts";
import type { ActionBook, ActionRecord } from "./book.ts";
import type { Delivery } from "./delivery.ts";
import { ActionError, CUSTOMER_RULE } from "./errors.ts";
import type { Ack, DeviceDirectory, Proposal, TouchpointDirectory } from "./ports.ts";
import type { Owner, ProfileBook } from "./profiles.ts";
import type { Recorder } from "./recorder.ts";
import type { RetainedState } from "./retained-state.ts";
import { answerable, undoable } from "./status.ts";
import { wire } from "./wire.ts";
import { postWebhook } from "./webhook.ts";

export interface Lifecycle {
  propose: (proposal: Proposal) => Promise<ActionRecord>;
  ack: (ack: Ack) => void;
  answer: (id: string, status: "accepted" | "declined", by: string) => Promise<ActionRecord>;
  setProfile: (subject: string, changes: Record<string, unknown>, by: string) => Promise<ActionRecord[]>;
  undo: (id: string, by: string) => Promise<ActionRecord>;
  /** A shared device's session with the subject ended. */
  withdraw: (device: string, subject: string) => void;
  /** Stops the expiry sweeper. */
  stop: () => void;
}

/**
 * What happens to actions: created from a rule's proposal or a customer's
 * request, accepted or declined, undone, expired when nobody answers, withdrawn
 * from a shared device whose session ended. Every step is recorded as an
 * action log event (status.ts says which steps move an action).
 */
export function actionLifecycle(
  config: { suggestionTtlMs: number },
  deps: {
    book: ActionBook;
    profiles: ProfileBook;
    recorder: Recorder;
    delivery: Delivery;
    state: RetainedState;
    registry: DeviceDirectory;
    touchpoints: TouchpointDirectory;
    /** Whether this node runs the cluster's once-only jobs (the expiry sweep). */
    leads: () => boolean;
    log: Logger;
  },
): Lifecycle {
  const { book, profiles, recorder, delivery, state, registry, touchpoints, log } = deps;
  const { newId, transition, open, write } = recorder;
  const publishState = state.publish;

  /** Every touchpoint of an owner: the device itself, or every device that serves the customer (linked, or in a session with them). */
  const devicesOf = (owner: Owner, origin: string | undefined): string[] => {
    if (owner.startsWith("device:")) return [owner.slice("device:".length)];
    const subject = owner.slice("subject:".length);
    const all = new Set([...(origin ? [origin] : []), ...touchpoints.devicesOf(subject)]);
    return [...all].filter((id) => registry.get(id)?.revoked === false);
  };

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
    if (!deps.leads()) return;
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
      // A trigger evaluated again (a partition taken over) proposes the id it did the first time.
      const known = proposal.id === undefined ? undefined : book.actions.get(proposal.id);
      if (known) return known;
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
          id: proposal.id ?? newId(),
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

    async undo(id, by) {
      const record = book.actions.get(id);
      if (!record) throw new ActionError("ACTION_NOT_FOUND", `no action '${id}'`);
      await undo(record, record.device, by);
      return record;
    },

    withdraw,
    stop: () => clearInterval(sweeper),
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
