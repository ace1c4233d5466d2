import type { Store } from "../store/index.ts";
import type { Owner } from "./profiles.ts";
import { allActionRows } from "./queries.ts";

export type ActionKind = "set" | "suggest" | "clear" | "notify";
export type ActionStatus =
  "proposed" | "delivered" | "applied" | "accepted" | "declined" | "failed" | "expired" | "undone" | "withdrawn";

export interface Transition {
  status: ActionStatus;
  at: string;
  device: string;
  by?: string;
  reason?: string;
}

export interface ActionRecord {
  id: string;
  rule: string;
  kind: ActionKind;
  key: string;
  value: unknown;
  prompt: string | undefined;
  why: string;
  owner: Owner;
  device: string;
  subject: string | undefined;
  /** Devices the action was sent to. */
  targets: string[];
  status: ActionStatus;
  /** The owner's value for the key before this action changed it; what undo restores. */
  previous: unknown;
  createdAt: number;
  transitions: Transition[];
}

export interface Participation {
  /** Prompts (suggestions) sent. */
  asks: number;
  /** Prompts answered (accepted or declined). */
  answers: number;
  accepted: number;
  declined: number;
  /** answers / asks, or null before the first ask. */
  rate: number | null;
}

export { ACTION_LOG } from "./queries.ts";

/** Statuses after which nothing but undo can happen. */
export const FINAL: ReadonlySet<ActionStatus> = new Set(["applied", "declined", "failed", "expired", "undone"]);

/**
 * The in-memory view of the action log: every action with its lifecycle,
 * and what the guards ask of it (when a rule last fired for a target, when
 * a target was last asked, when it declined). Rebuilt from `action_log`.
 */
export class ActionBook {
  readonly actions = new Map<string, ActionRecord>();
  private readonly fired = new Map<string, number>();
  private readonly prompts = new Map<string, number>();
  private readonly declines = new Map<string, number>();
  private readonly participation = new Map<string, Participation>();
  /** subject -> ids of the actions about them (owned by them, or caused by a message about them). */
  private readonly bySubject = new Map<string, Set<string>>();

  static async rebuild(store: Store): Promise<ActionBook> {
    const book = new ActionBook();
    const rows = await store.query<
      Record<string, unknown> & { time: Date; device: string; action: string; status: ActionStatus }
    >(allActionRows());
    const json = (v: unknown) => (v === undefined || v === null ? undefined : JSON.parse(String(v)));
    for (const row of rows) {
      const existing = book.actions.get(row.action);
      const at = row.time.getTime();
      if (row.status === "proposed") {
        if (existing) {
          if (row.device) existing.targets.push(row.device);
          continue;
        }
        book.add({
          id: row.action,
          rule: String(row.rule ?? ""),
          kind: String(row.kind ?? "set") as ActionKind,
          key: String(row.key ?? ""),
          value: json(row.value),
          prompt: row.prompt == null ? undefined : String(row.prompt),
          why: String(row.why ?? ""),
          owner: String(row.owner ?? `device:${row.device}`) as Owner,
          device: row.device ?? "",
          subject: row.subject == null ? undefined : String(row.subject),
          // A change by a customer who has no device yet is logged without a target.
          targets: row.device ? [row.device] : [],
          status: "proposed",
          previous: json(row.previous),
          createdAt: at,
          transitions: [],
        });
      } else if (existing) {
        if (
          row.status === "applied" &&
          existing.kind === "suggest" &&
          row.previous !== undefined &&
          row.previous !== null
        )
          existing.previous = json(row.previous);
        book.transition(
          existing,
          row.status,
          row.device,
          at,
          row.by == null ? undefined : String(row.by),
          row.reason == null ? undefined : String(row.reason),
        );
      }
    }
    return book;
  }

  add(record: ActionRecord): void {
    this.actions.set(record.id, record);
    record.transitions.push({
      status: "proposed",
      at: new Date(record.createdAt).toISOString(),
      device: record.device,
    });
    const subject = subjectOf(record);
    if (subject !== undefined) {
      let ids = this.bySubject.get(subject);
      if (!ids) this.bySubject.set(subject, (ids = new Set()));
      ids.add(record.id);
    }
    this.derive(record);
  }

  private derive(record: ActionRecord): void {
    const key = `${record.rule}|${record.owner}`;
    this.fired.set(key, Math.max(this.fired.get(key) ?? 0, record.createdAt));
    if (record.kind === "suggest") {
      this.prompts.set(record.owner, Math.max(this.prompts.get(record.owner) ?? 0, record.createdAt));
      this.count(record.owner).asks += 1;
    }
  }

  transition(
    record: ActionRecord,
    status: ActionStatus,
    device: string,
    at: number,
    by?: string,
    reason?: string,
  ): void {
    const answered = record.status === "accepted" || record.status === "declined" || FINAL.has(record.status);
    record.transitions.push({
      status,
      at: new Date(at).toISOString(),
      device,
      ...(by ? { by } : {}),
      ...(reason ? { reason } : {}),
    });
    // A pending delivery taken back (the shared device's session ended) says nothing about the action itself.
    if (status === "withdrawn") return;
    // Every transition is kept, but a late or repeated ack never moves a finished action back.
    if (status === "delivered" && record.status !== "proposed") return;
    if (record.status === "undone" || (FINAL.has(record.status) && status !== "undone")) return;
    record.status = status;
    if (record.kind !== "suggest" || answered) return;
    if (status === "accepted" || status === "declined") {
      const p = this.count(record.owner);
      p.answers += 1;
      if (status === "accepted") p.accepted += 1;
      else {
        p.declined += 1;
        this.declines.set(`${record.rule}|${record.owner}`, at);
      }
    }
  }

  lastFired(rule: string, target: string): number | undefined {
    return this.fired.get(`${rule}|${target}`);
  }

  /** Records a firing before anything is awaited, so a burst cannot slip past a cooldown. */
  markFired(rule: string, target: string, at: number): void {
    this.fired.set(`${rule}|${target}`, at);
  }

  lastPrompt(target: string): number | undefined {
    return this.prompts.get(target);
  }

  declinedAt(rule: string, target: string): number | undefined {
    return this.declines.get(`${rule}|${target}`);
  }

  participationOf(owner: string): Participation {
    const p = this.participation.get(owner) ?? { asks: 0, answers: 0, accepted: 0, declined: 0, rate: null };
    return { ...p, rate: p.asks > 0 ? p.answers / p.asks : null };
  }

  /** The actions about a subject, oldest first. */
  of(subject: string): ActionRecord[] {
    return [...(this.bySubject.get(subject) ?? [])].map((id) => this.actions.get(id)!).filter(Boolean);
  }

  /**
   * Erasure: forgets every action about the subject, and recomputes what the
   * guards remember (cooldowns, prompts, declines, participation) from the
   * actions that stay, as a rebuild from the erased log would. Answers the
   * forgotten actions.
   */
  forgetSubject(subject: string): ActionRecord[] {
    const gone = this.of(subject);
    if (gone.length === 0) return [];
    this.bySubject.delete(subject);
    for (const record of gone) this.actions.delete(record.id);
    this.fired.clear();
    this.prompts.clear();
    this.declines.clear();
    this.participation.clear();
    for (const record of this.actions.values()) {
      this.derive(record);
      if (record.kind !== "suggest") continue;
      const answer = record.transitions.find((t) => t.status === "accepted" || t.status === "declined");
      if (!answer) continue;
      const p = this.count(record.owner);
      p.answers += 1;
      if (answer.status === "accepted") p.accepted += 1;
      else {
        p.declined += 1;
        const key = `${record.rule}|${record.owner}`;
        this.declines.set(key, Math.max(this.declines.get(key) ?? 0, Date.parse(answer.at)));
      }
    }
    return gone;
  }

  /** Suggestions still waiting for an answer that were made before `before`. */
  unanswered(before: number): ActionRecord[] {
    return [...this.actions.values()].filter(
      (r) => r.kind === "suggest" && (r.status === "proposed" || r.status === "delivered") && r.createdAt < before,
    );
  }

  private count(owner: string): Participation {
    let p = this.participation.get(owner);
    if (!p) this.participation.set(owner, (p = { asks: 0, answers: 0, accepted: 0, declined: 0, rate: null }));
    return p;
  }
}

/** Whom an action is about: the subject that owns it, or the subject of the message that caused it. */
function subjectOf(record: ActionRecord): string | undefined {
  return record.owner.startsWith("subject:") ? record.owner.slice("subject:".length) : record.subject;
}
