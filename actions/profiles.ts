import type { Logger } from "pino";
import type { View } from "../changes/index.ts";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { ident, influxql } from "../store/influxql.ts";
import { PROFILE_TOPIC, type ProfileEvent } from "./events.ts";
import { PROFILE_CHANGES, profileEventOf } from "./rows.ts";

/** Whose profile: a device's own keys, or a customer's that follow them to every touchpoint. */
export type Owner = `device:${string}` | `subject:${string}`;

interface Profile {
  values: Record<string, unknown>;
  /** Per key, the time of the change in effect (a cleared key keeps it): a change older than that is stale. */
  times: Map<string, number>;
}

/**
 * Personalization profiles as an in-memory view over `profile_changes`
 * events. The latest change of a key wins by its time, so applying a change
 * twice, or changes of different keys and owners in any order, gives the same
 * profiles.
 */
export class ProfileBook implements View<ProfileEvent> {
  private readonly profiles = new Map<Owner, Profile>();

  static async rebuild(store: Store, log: Logger): Promise<ProfileBook> {
    const book = new ProfileBook();
    await book.load(store, log);
    return book;
  }

  /** Applies the stored changes again (a catch-up): the latest change of a key still wins. */
  async load(store: Store, log: Logger): Promise<void> {
    const rows = await store.query<Record<string, unknown> & { time: Date }>(
      influxql`SELECT * FROM ${ident(PROFILE_CHANGES)}`,
    );
    for (const row of rows) {
      const event = PROFILE_TOPIC.schema.safeParse(profileEventOf(row));
      if (event.success) this.apply(event.data);
      else log.warn({ owner: row.owner, err: event.error.message }, "profile change row skipped");
    }
  }

  get size(): number {
    let size = 0;
    for (const profile of this.profiles.values()) if (Object.keys(profile.values).length > 0) size += 1;
    return size;
  }

  get(owner: Owner): Readonly<Record<string, unknown>> | undefined {
    const values = this.profiles.get(owner)?.values;
    return values && Object.keys(values).length > 0 ? values : undefined;
  }

  /** The change event of setting or clearing an owner's key now. */
  static change(owner: Owner, key: string, op: "set" | "clear", value: unknown, action: string): ProfileEvent {
    return {
      owner,
      key,
      op,
      ...(op === "set" && value !== undefined ? { value: JSON.stringify(value) } : {}),
      action,
      micros: nextMicros(),
    };
  }

  /** Erasure: the owner's profile is gone from memory (its change events are erased apart). */
  forget(owner: Owner): void {
    this.profiles.delete(owner);
  }

  apply(event: ProfileEvent): void {
    let profile = this.profiles.get(event.owner);
    if (!profile) this.profiles.set(event.owner, (profile = { values: {}, times: new Map() }));
    if ((profile.times.get(event.key) ?? -1) >= event.micros) return;
    profile.times.set(event.key, event.micros);
    if (event.op === "set") profile.values[event.key] = event.value === undefined ? undefined : JSON.parse(event.value);
    else delete profile.values[event.key];
  }
}
