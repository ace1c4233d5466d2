import type { Fleet, Phase } from "./fleet.ts";
import type { ResourceMeter, ResourceReport } from "./resources.ts";
import type { Counts, StatsSnapshot } from "./stats.ts";

export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** Progress rewrites one line on a terminal and prints lines elsewhere. */
  tty: boolean;
}

/** A line of its own above the progress line (which the next tick draws again). */
export function note(io: Io, text: string): void {
  io.err(`${io.tty ? "\r\x1b[2K" : ""}${text}\n`);
}

const n = (x: number) => x.toLocaleString("en-US");
const clock = (ms: number) => {
  const s = Math.floor(ms / 1000);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
    : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
};

function countsLine(c: Counts, perSecond?: number): string {
  return `sent ${n(c.sent)}${perSecond === undefined ? "" : ` (${perSecond.toFixed(0)}/s)`} · actions ${n(c.actions)} · applied ${n(c.applied)} · accepted ${n(c.accepted)} · declined ${n(c.declined)} · undone ${n(c.undone)} · errors ${n(c.errors)}`;
}

function phaseText(p: Phase): string {
  switch (p.phase) {
    case "provisioning":
      return `provisioning devices ${n(p.done)}/${n(p.total)} (${n(p.created)} new)`;
    case "consent":
      return `recording consent ${n(p.done)}/${n(p.total)}`;
    case "connecting":
      return `connecting ${n(p.done)}/${n(p.total)}`;
    case "running":
      return "running";
  }
}

/** The one progress line: what the fleet is doing, with its counts and the send rate since the last line. */
export class ProgressLine {
  private phase: Phase | undefined;
  private timer: NodeJS.Timeout | undefined;
  private last = { at: Date.now(), sent: 0 };
  private lastPhasePrint = 0;

  constructor(
    private readonly fleet: Fleet,
    private readonly io: Io,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.print(), this.intervalMs);
    this.timer.unref();
  }

  setPhase(phase: Phase): void {
    const changed = phase.phase !== this.phase?.phase;
    this.phase = phase;
    const finished = "done" in phase && phase.done === phase.total;
    // On a terminal the line follows along; in a log, a phase gets a line when it starts and ends.
    if (this.io.tty ? Date.now() - this.lastPhasePrint > 100 : changed || finished) {
      this.lastPhasePrint = Date.now();
      this.print();
    }
  }

  /** Leaves the terminal's line empty for what follows. */
  stop(): void {
    clearInterval(this.timer);
    if (this.io.tty) this.io.err("\r\x1b[2K");
  }

  line(): string {
    const s = this.fleet.stats.snapshot();
    const now = Date.now();
    const perSecond = ((s.total.sent - this.last.sent) * 1000) / Math.max(1, now - this.last.at);
    this.last = { at: now, sent: s.total.sent };
    const head = `[${clock(s.elapsedMs)}]`;
    if (this.phase && this.phase.phase !== "running") return `${head} ${phaseText(this.phase)}`;
    return `${head} ${n(s.connected)}/${n(s.devices)} connected · ${countsLine(s.total, perSecond)}`;
  }

  private print(): void {
    const text = this.line();
    if (this.io.tty) this.io.err(`\r\x1b[2K${text}`);
    else this.io.err(`${text}\n`);
  }
}

export interface Summary {
  scenario: string;
  devices: number;
  /** Requested records per second per device. */
  rate: number;
  elapsedSeconds: number;
  connected: number;
  /** Records the platform acknowledged per second over the run, across the fleet. */
  sentPerSecond: number;
  provisioned: { created: number; reused: number };
  totals: Counts;
  byScenario: Record<string, Counts>;
  byRule: Record<string, Counts>;
  customers: { total: number; optedIn: number; patterns: Record<string, { customers: number; optedIn: number }> };
  consentApi: boolean;
  process: ResourceReport;
}

/** `connected`: devices connected when the fleet was told to stop. */
export function summarize(
  fleet: Fleet,
  scenario: string,
  rate: number,
  meter: ResourceMeter,
  connected: number,
): Summary {
  const s: StatsSnapshot = fleet.stats.snapshot();
  const patterns: Summary["customers"]["patterns"] = {};
  for (const c of fleet.plan.customers) {
    if (!c.pattern) continue;
    const p = (patterns[c.pattern] ??= { customers: 0, optedIn: 0 });
    p.customers += 1;
    if (c.optedIn) p.optedIn += 1;
  }
  return {
    scenario,
    devices: s.devices,
    rate,
    elapsedSeconds: Math.round(s.elapsedMs / 100) / 10,
    connected,
    sentPerSecond: Math.round((s.total.sent * 10_000) / Math.max(1, s.elapsedMs)) / 10,
    provisioned: fleet.provisioned,
    totals: s.total,
    byScenario: s.byScenario,
    byRule: s.byRule,
    customers: {
      total: fleet.plan.customers.length,
      optedIn: fleet.plan.customers.filter((c) => c.optedIn).length,
      patterns,
    },
    consentApi: !fleet.consentUnavailable,
    process: meter.read(),
  };
}

export function formatSummary(s: Summary): string {
  const pad = (text: string, width: number) => text.padEnd(width);
  const lines = [
    `refeed sim: ${s.scenario}, ${n(s.devices)} devices for ${clock(s.elapsedSeconds * 1000)} (asked ${s.rate}/s each; the platform acknowledged ${s.sentPerSecond}/s in all)`,
    `  ${countsLine(s.totals)} · failed ${n(s.totals.failed)} · state updates ${n(s.totals.states)} · reconnects ${n(s.totals.reconnects)}`,
    "  by scenario:",
    ...Object.entries(s.byScenario).map(([name, c]) => `    ${pad(name, 12)} ${countsLine(c)}`),
    "  by rule (actions received, answers sent):",
    ...(Object.keys(s.byRule).length === 0
      ? ["    (no actions yet)"]
      : Object.entries(s.byRule)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(
            ([rule, c]) =>
              `    ${pad(rule, 22)} actions ${n(c.actions)} · applied ${n(c.applied)} · accepted ${n(c.accepted)} · declined ${n(c.declined)} · undone ${n(c.undone)}`,
          )),
    `  customers: ${n(s.customers.total)}, ${n(s.customers.optedIn)} opted in, ${n(s.customers.total - s.customers.optedIn)} not (story 8)${s.consentApi ? "" : " — the platform has no consent API: none is opted in there"}`,
    ...Object.entries(s.customers.patterns).map(
      ([pattern, p]) => `    ${pattern}: ${n(p.customers)} (${n(p.optedIn)} opted in)`,
    ),
    `  devices: ${n(s.provisioned.created)} provisioned, ${n(s.provisioned.reused)} reused; ${n(s.connected)} connected when stopped`,
    `  this process: ${s.process.cpuSeconds} s CPU over ${s.process.wallSeconds} s (${Math.round(s.process.cpuShareOfOneCore * 100)}% of one core` +
      (s.process.steady ? `; ${Math.round(s.process.steady.cpuShareOfOneCore * 100)}% once all were connected` : "") +
      `), max RSS ${n(s.process.maxRssMb)} MB`,
  ];
  return `${lines.join("\n")}\n`;
}
