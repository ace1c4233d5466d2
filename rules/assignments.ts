import type { Logger } from "pino";
import type { Store } from "../store/index.ts";
import { nextMicros } from "../store/clock.ts";
import { influxql, ident } from "../store/influxql.ts";
import { groupOf, unitOf } from "./experiment.ts";

/**
 * Each owner's group in a rule's experiment, recorded the first time they
 * reach it. Tagged with `owner` (subject:<id> or device:<id>), so a subject's
 * export holds their assignments and an erasure deletes them with the rest.
 */
export const RULE_ASSIGNMENTS = "rule_assignments";
const measurement = ident(RULE_ASSIGNMENTS);

export interface Assignment {
  rule: string;
  owner: string;
  group: "treated" | "held_out";
  /** When the owner was first assigned (ms). */
  at: number;
}

/** Every recorded assignment of a rule; an owner recorded twice (two nodes at once) keeps the earliest. */
export async function assignmentsOf(store: Store, rule: string): Promise<Map<string, Assignment>> {
  const rows = await store.query(influxql`SELECT "group" FROM ${measurement} WHERE "rule" = ${rule} GROUP BY "owner"`);
  const out = new Map<string, Assignment>();
  for (const row of rows) {
    const owner = String(row.owner);
    const at = row.time.getTime();
    const seen = out.get(owner);
    if (!seen || at < seen.at)
      out.set(owner, { rule, owner, group: row.group === "held_out" ? "held_out" : "treated", at });
  }
  return out;
}

export interface AssignmentLog {
  /** Records the owner's group unless it already is; the group itself is the hash's, recorded or not. */
  note(rule: string, owner: string, fraction: number): void;
  forgetOwner(owner: string): void;
  close(): Promise<void>;
}

export async function assignmentLog(store: Store, log: Logger): Promise<AssignmentLog> {
  const known = new Set<string>();
  // Rebuilt at start so a restart records nobody twice.
  const rows = await store
    .query(influxql`SELECT "group" FROM ${measurement} GROUP BY "rule", "owner"`)
    .catch((err: Error) => {
      if (/measurement not found/i.test(err.message)) return [];
      throw err;
    });
  for (const row of rows) known.add(`${String(row.rule)}|${String(row.owner)}`);
  const pending = new Set<Promise<unknown>>();
  return {
    note(rule, owner, fraction) {
      const key = `${rule}|${owner}`;
      if (known.has(key)) return;
      known.add(key);
      const write = store
        .write([
          {
            measurement: RULE_ASSIGNMENTS,
            tags: { rule, owner },
            fields: { group: groupOf(rule, owner, fraction), unit: unitOf(rule, owner) },
            timestamp: String(nextMicros()),
          },
        ])
        .catch((err: Error) => {
          known.delete(key);
          log.error(
            { rule, err: err.message },
            "experiment assignment not recorded; recorded at the owner's next evaluation",
          );
        })
        .finally(() => pending.delete(write));
      pending.add(write);
    },
    forgetOwner(owner) {
      for (const key of known) if (key.endsWith(`|${owner}`)) known.delete(key);
    },
    async close() {
      await Promise.all(pending);
    },
  };
}
