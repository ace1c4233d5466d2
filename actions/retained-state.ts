import type { Logger } from "pino";
import type { DeviceDirectory, Publisher, TouchpointDirectory } from "./ports.ts";
import type { Owner } from "./profiles.ts";
import type { StateWire } from "./wire.ts";

export interface RetainedState {
  /** The personalization profile a device sees: its own keys and its subject's. */
  stateOf: (device: string) => Record<string, unknown>;
  /** The retained `state` payload of a device: `{device, subject, profile, ts}`. */
  stateMessage: (device: string) => string;
  /** Publishes the device's state unless it is what the device was last sent. */
  publish: (device: string) => Promise<void>;
  /** Publishes soon, once for the changes of one turn of the event loop. */
  publishSoon: (device: string) => void;
  /** Every device's state, also those whose profile is empty now. */
  publishAll: () => Promise<void>;
}

/** Each device's retained `devices/{id}/state`: its profile and its subject's, published when either changes. */
export function retainedState(deps: {
  profileOf(owner: Owner): Readonly<Record<string, unknown>> | undefined;
  touchpoints: Pick<TouchpointDirectory, "subjectOf">;
  registry: Pick<DeviceDirectory, "list">;
  publisher: Publisher;
  log: Logger;
}): RetainedState {
  const { touchpoints, publisher, log } = deps;
  const stateOf = (device: string): Record<string, unknown> => {
    const subject = touchpoints.subjectOf(device);
    return { ...deps.profileOf(`device:${device}`), ...(subject ? deps.profileOf(`subject:${subject}`) : {}) };
  };

  const stateMessage = (device: string) => {
    const state: StateWire = {
      device,
      subject: touchpoints.subjectOf(device) ?? null,
      profile: stateOf(device),
      ts: Date.now(),
    };
    return JSON.stringify(state);
  };
  /** What each device's retained state last said (without its time): an unchanged state is not sent again. */
  const lastState = new Map<string, string>();
  const publish = async (device: string) => {
    const content = JSON.stringify([touchpoints.subjectOf(device) ?? null, stateOf(device)]);
    if (lastState.get(device) === content) return;
    lastState.set(device, content);
    await publisher.publish(`devices/${device}/state`, stateMessage(device), { qos: 1, retain: true });
  };
  // Session starts and ends of one publish (a card session in one batch) come together: one state for all of them.
  const stale = new Set<string>();
  const publishSoon = (device: string) => {
    if (stale.has(device)) return;
    stale.add(device);
    setImmediate(() => {
      stale.delete(device);
      publish(device).catch((err: Error) => log.error({ device, err: err.message }, "state not published"));
    });
  };

  return {
    stateOf,
    stateMessage,
    publish,
    publishSoon,
    async publishAll() {
      // After a restart the retained store starts empty, and a device must not keep a profile that was cleared or undone.
      lastState.clear();
      await Promise.all(
        deps.registry
          .list()
          .filter((d) => !d.revoked)
          .map((d) => publish(d.id)),
      );
    },
  };
}
