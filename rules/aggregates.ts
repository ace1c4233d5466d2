import type { RuleMessage } from "./message.ts";
import type { Evaluate } from "./cel.ts";
import type { AggregateSpec, WindowSpec } from "./schema.ts";
import { CountWindow, TimeWindow, type Scalar, type Stats } from "./window.ts";
import type { SessionLog } from "./sessions.ts";

/**
 * One stream of values that aggregates read: which messages (of + where),
 * which value, over which window, for whose history (scope). Rules that
 * declare the same source share its memory.
 */
export class Source {
  private readonly windows = new Map<string, TimeWindow | CountWindow>();
  /** Whether any aggregate on this source reads value counts (mode, mode_share, distinct). */
  withValues = false;

  constructor(
    readonly id: string,
    readonly scope: "device" | "subject",
    readonly of: string | undefined,
    readonly window: WindowSpec,
    private readonly where: Evaluate | undefined,
    private readonly value: Evaluate | undefined,
  ) {}

  static idOf(scope: string, spec: AggregateSpec): string {
    return JSON.stringify([scope, spec.of ?? null, spec.where ?? null, spec.value ?? null, spec.window]);
  }

  /** Adds the message if it belongs; session-window sources write into the key's session log. */
  observe(msg: RuleMessage, celMsg: Record<string, unknown>, key: string, sessions: SessionLog | undefined): void {
    if (this.where) {
      const pass = this.where({ msg: celMsg });
      if (!pass.ok || pass.value !== true) return;
    }
    let value: Scalar | undefined;
    if (this.value) {
      const result = this.value({ msg: celMsg });
      if (
        result.ok &&
        (typeof result.value === "number" || typeof result.value === "string" || typeof result.value === "boolean")
      )
        value = result.value;
    }
    if (this.window.kind === "sessions") {
      sessions?.add(this.id, value, msg.ts);
      return;
    }
    let window = this.windows.get(key);
    if (!window)
      this.windows.set(
        key,
        (window = this.window.kind === "time" ? new TimeWindow(this.window.ms) : new CountWindow(this.window.n)),
      );
    window.add(value, msg.ts);
  }

  read(
    key: string,
    now: number,
    sessions: SessionLog | undefined,
  ): { stats: Stats | undefined; sessions: number; withSource: number } {
    if (this.window.kind === "sessions") {
      if (!sessions) return { stats: undefined, sessions: 0, withSource: 0 };
      return sessions.read(this.id, this.window.n, this.withValues);
    }
    const window = this.windows.get(key);
    if (!window) return { stats: undefined, sessions: 0, withSource: 0 };
    return {
      stats: window instanceof TimeWindow ? window.read(now, this.withValues) : window.read(),
      sessions: 0,
      withSource: 0,
    };
  }

  forget(key: string): void {
    this.windows.delete(key);
  }

  get keys(): number {
    return this.windows.size;
  }
}

export const VALUE_FNS: ReadonlySet<string> = new Set(["mode", "mode_share", "distinct"]);

/** The value an aggregate function gives over a window's statistics; null when there is nothing to give. */
export function aggregateValue(
  fn: AggregateSpec["fn"],
  read: { stats: Stats | undefined; sessions: number; withSource: number },
  hasSource: boolean,
): unknown {
  const s = read.stats;
  switch (fn) {
    case "count":
      return s?.count ?? 0;
    case "absent":
      return (s?.count ?? 0) === 0;
    case "sessions":
      return hasSource ? read.withSource : read.sessions;
    case "sum":
      return s?.sum ?? 0;
    case "avg":
      return s && s.numeric > 0 ? s.sum / s.numeric : null;
    case "min":
      return s && s.numeric > 0 ? s.min : null;
    case "max":
      return s && s.numeric > 0 ? s.max : null;
    case "last":
      return s?.last ?? null;
    case "distinct":
      return s?.values.size ?? 0;
    case "mode":
    case "mode_share": {
      const top = s ? modeOf(s) : undefined;
      if (!top) return null;
      if (fn === "mode") return JSON.parse(top.key);
      let total = s!.overflow;
      for (const n of s!.values.values()) total += n;
      return top.n / total;
    }
  }
}

/** Most frequent value; ties go to the smaller JSON text so the answer is stable. */
function modeOf(stats: Stats): { key: string; n: number } | undefined {
  let best: { key: string; n: number } | undefined;
  for (const [key, n] of stats.values) if (!best || n > best.n || (n === best.n && key < best.key)) best = { key, n };
  return best;
}
