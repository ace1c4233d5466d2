import type { Logger } from "pino";
import type { View } from "../changes/index.ts";
import type { Store } from "../store/index.ts";
import { ACTION_LOG_TOPIC, type ActionLogEvent, type ProposedEvent } from "./events.ts";
import { FINAL, nextStatus, type ActionKind, type ActionStatus } from "./status.ts";
import type { Owner } from "./profiles.ts";
import { actionLogEventOf } from "./rows.ts";
import { allActionRows } from "./queries.ts";

export type { ActionKind, ActionStatus } from "./status.ts";
export { FINAL } from "./status.ts";

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

/**
 * The in-memory view of the action log: every action with its lifecycle,
 * and what the guards ask of it (when a rule last fired for a target, when
 * a target was last asked, when it declined). Rebuilt from `action_log`,
 * then kept by the same `apply` for every new row, made here or elsewhere.
 */
export class ActionBook implements View<ActionLogEvent> {
  readonly actions = new Map<string, ActionRecord>();
  private readonly fired = new Map<string, number>();
  private readonly prompts = new Map<string, number>();
  private readonly declines = new Map<string, number>();
  private readonly participation = new Map<string, Participation>();
  /** subject -> ids of the actions about them (owned by them, or caused by a message about them). */
  private readonly bySubject = new Map<string, Set<string>>();

  /** Identities of the events applied, per action: applying one again changes nothing. */
  private readonly seen = new Map<string, Set<string>>();

  /** Applies every stored row of the action log, as its change event, in time order. */
  static async rebuild(store: Store, log: Logger): Promise<ActionBook> {
    const book = new ActionBook();
    await book.load(store, log);
    return book;
  }

  /** Applies the stored rows again (a catch-up): what the book has already changes nothing. */
  async load(store: Store, log: Logger): Promise<void> {
    const rows = await store.query<Record<string, unknown> & { time: Date }>(allActionRows());
    for (const row of rows) {
      const event = ACTION_LOG_TOPIC.schema.safeParse(actionLogEventOf(row));
      if (event.success) this.apply(event.data);
      else log.warn({ action: row.action, status: row.status, err: event.error.message }, "action log row skipped");
    }
  }

  /**
   * The one way the book changes. Idempotent by the event's identity; events of
   * different actions commute (what the guards keep is a max or a count).
   */
  apply(event: ActionLogEvent): void {
    const existing = this.actions.get(event.action);
    if (event.status === "proposed") {
      if (!existing) this.add(recordOf(event));
      // Every further `proposed` row of an action names one more target.
      else if (event.device && !existing.targets.includes(event.device)) existing.targets.push(event.device);
      this.remember(event);
      return;
    }
    if (!existing || !this.remember(event)) return;
    if (event.status === "applied" && existing.kind === "suggest" && event.previous !== undefined)
      existing.previous = JSON.parse(event.previous) as unknown;
    this.transition(existing, event.status, event.device, Math.floor(event.micros / 1000), event.by, event.reason);
  }

  /** Whether the event is new to the book (and now remembered). */
  private remember(event: ActionLogEvent): boolean {
    const identity = ACTION_LOG_TOPIC.identity(event);
    let seen = this.seen.get(event.action);
    if (!seen) this.seen.set(event.action, (seen = new Set()));
    if (seen.has(identity)) return false;
    seen.add(identity);
    return true;
  }

  private add(record: ActionRecord): void {
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

  private transition(
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
    // Every transition is kept; nextStatus says whether it moves the action.
    const next = nextStatus(record.status, status);
    if (next === undefined) return;
    record.status = next;
    if (record.kind !== "suggest" || answered) return;
    if (status === "accepted" || status === "declined") {
      const p = this.count(record.owner);
      p.answers += 1;
      if (status === "accepted") p.accepted += 1;
      else {
        p.declined += 1;
        const key = `${record.rule}|${record.owner}`;
        this.declines.set(key, Math.max(this.declines.get(key) ?? 0, at));
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
    for (const record of gone) {
      this.actions.delete(record.id);
      this.seen.delete(record.id);
    }
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

/** The action a first `proposed` row starts. */
function recordOf(event: ProposedEvent): ActionRecord {
  const at = Math.floor(event.micros / 1000);
  return {
    id: event.action,
    rule: event.rule,
    kind: event.kind,
    key: event.key,
    value: event.value === undefined ? undefined : (JSON.parse(event.value) as unknown),
    prompt: event.prompt,
    why: event.why,
    owner: event.owner,
    device: event.origin ?? event.device,
    subject: event.subject,
    // A change by a customer who has no device yet is logged without a target.
    targets: event.device ? [event.device] : [],
    status: "proposed",
    previous: event.previous === undefined ? undefined : (JSON.parse(event.previous) as unknown),
    createdAt: at,
    transitions: [],
  };
}

/** Whom an action is about: the subject that owns it, or the subject of the message that caused it. */
function subjectOf(record: ActionRecord): string | undefined {
  return record.owner.startsWith("subject:") ? record.owner.slice("subject:".length) : record.subject;
}
