import type { Point, Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { ident, influxql } from "../store/influxql.ts";

/** Whose profile: a device's own keys, or a customer's that follow them to every touchpoint. */
export type Owner = `device:${string}` | `subject:${string}`;

const MEASUREMENT = "profile_changes";

/**
 * Personalization profiles as an in-memory view over `profile_changes`
 * events; each change returns the point that records it.
 */
export class ProfileBook {
  private readonly profiles = new Map<Owner, Record<string, unknown>>();

  static async rebuild(store: Store): Promise<ProfileBook> {
    const book = new ProfileBook();
    const rows = await store.query<{ time: Date; owner: string; key: string; op: string; value?: string }>(
      influxql`SELECT * FROM ${ident(MEASUREMENT)}`,
    );
    for (const row of rows)
      book.apply(
        row.owner as Owner,
        row.key,
        row.op === "set" ? "set" : "clear",
        row.value == null ? undefined : JSON.parse(row.value),
      );
    return book;
  }

  get size(): number {
    return this.profiles.size;
  }

  get(owner: Owner): Readonly<Record<string, unknown>> | undefined {
    return this.profiles.get(owner);
  }

  change(owner: Owner, key: string, op: "set" | "clear", value: unknown, action: string): Point {
    this.apply(owner, key, op, value);
    return {
      measurement: MEASUREMENT,
      tags: { owner },
      fields: { key, op, action, ...(op === "set" ? { value: JSON.stringify(value) } : {}) },
      timestamp: String(nextMicros()),
    };
  }

  /** Erasure: the owner's profile is gone from memory (its change events are erased apart). */
  forget(owner: Owner): void {
    this.profiles.delete(owner);
  }

  private apply(owner: Owner, key: string, op: "set" | "clear", value: unknown): void {
    const profile = this.profiles.get(owner) ?? {};
    if (op === "set") profile[key] = value;
    else delete profile[key];
    if (Object.keys(profile).length === 0) this.profiles.delete(owner);
    else this.profiles.set(owner, profile);
  }
}
