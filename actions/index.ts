import { Registry } from "prom-client";
import type { Logger } from "pino";
import type { ChangeFeed } from "../changes/index.ts";
import type { ClusterJobs } from "../coordination/jobs.ts";
import type { Store } from "../store/index.ts";
import { ActionBook, type ActionRecord, type Participation } from "./book.ts";
import { startDelivery, type Delivery } from "./delivery.ts";
import { actionLifecycle } from "./lifecycle.ts";
import type { Ack, DeviceDirectory, Proposal, Publisher, TouchpointDirectory } from "./ports.ts";
import { ProfileBook, type Owner } from "./profiles.ts";
import { retainedState } from "./retained-state.ts";
import { createRecorder } from "./recorder.ts";
import { wire } from "./wire.ts";

export type { ActionRecord, ActionStatus, Participation } from "./book.ts";
export type { Owner } from "./profiles.ts";
export type { Publisher } from "./ports.ts";
export { ActionError, CUSTOMER_RULE } from "./errors.ts";

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
    /** Cluster mode: the node holding the jobs lease expires suggestions, once for all. */
    jobs?: Pick<ClusterJobs, "leads">;
    log: Logger;
    /** Where `refeed_actions_total` is counted (a private registry when absent). */
    metrics?: Registry;
  },
): Promise<Actions> {
  const { store, registry, publisher, touchpoints, feed } = deps;
  const log = deps.log.child({ part: "actions" });
  const book = await ActionBook.rebuild(store, log);
  const profiles = await ProfileBook.rebuild(store, log);
  log.info({ actions: book.actions.size, profiles: profiles.size }, "action log and profiles rebuilt from InfluxDB");
  const recorder = createRecorder({ store, log, book, profiles, feed, metrics: deps.metrics ?? new Registry() });
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
    feed,
  });

  const state = retainedState({ profileOf: (owner) => profiles.get(owner), touchpoints, registry, publisher, log });
  const lifecycle = actionLifecycle(config, {
    book,
    profiles,
    recorder,
    delivery,
    state,
    registry,
    touchpoints,
    leads: () => deps.jobs?.leads() ?? true,
    log,
  });

  // A new device finds its (empty) state retained on its first subscribe, like every other device.
  // What a change sets off is done once, by the node that made it; the others' views only follow.
  const stopProvisioning = registry.onChange(
    (change) => change.here && change.op === "provisioned" && state.publishSoon(change.device),
  );
  const stopFollowing = touchpoints.onChange(({ device, before, here }) => {
    if (!here || registry.get(device)?.revoked !== false) return;
    if (before) lifecycle.withdraw(device, before);
    state.publishSoon(device);
  });

  // A catch-up takes in what the feed did not bring; the retained states are published again from the result.
  const stopResync = feed.onResync?.(async () => {
    await book.load(store, log);
    await profiles.load(store, log);
    if (deps.jobs?.leads() ?? true) await state.publishAll();
  });
  return {
    propose: lifecycle.propose,
    ack: lifecycle.ack,
    answer: lifecycle.answer,
    setProfile: lifecycle.setProfile,
    undo: lifecycle.undo,
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

    lastFired: (rule, target) => book.lastFired(rule, target),
    lastPrompt: (target) => book.lastPrompt(target),
    declinedAt: (rule, target) => book.declinedAt(rule, target),
    participation: (owner) => book.participationOf(owner),
    get: (id) => book.actions.get(id),
    stateOf: state.stateOf,
    stateMessage: state.stateMessage,
    publishAllState: () => state.publishAll(),
    delivery,
    async close() {
      stopResync?.();
      lifecycle.stop();
      stopFollowing();
      stopProvisioning();
      await recorder.close();
      await delivery.close();
    },
  };
}
