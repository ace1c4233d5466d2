import { healthComponents, type HealthComponent, type HealthStatus } from "./score.ts";

/** One device in the fleet view: its score, the score of each component, and what its customers said last. */
export interface FleetRow {
  device: string;
  kind: string | null;
  subject: string | null;
  revoked: boolean;
  online: boolean;
  lastSeen: string | null;
  score: number | null;
  status: HealthStatus;
  components: Record<HealthComponent, number | null>;
  feedback: {
    negative: number;
    latestNegative: { text: string; sentiment: number; rating: number | null; at: string } | null;
  };
}

export const fleetSorts = [
  "score",
  "-score",
  "device",
  "-device",
  "lastSeen",
  "-lastSeen",
  ...healthComponents,
] as const;
export type FleetSort = (typeof fleetSorts)[number];

export interface FleetFilter {
  /** Case-insensitive part of the device id, kind or subject; or a subject id seen on the device (`subjectDevices`). */
  q?: string | undefined;
  subjectDevices?: ReadonlySet<string> | undefined;
  kind?: string | undefined;
  status?: HealthStatus | undefined;
  online?: boolean | undefined;
  revoked: boolean;
}

export function filterRows(rows: readonly FleetRow[], f: FleetFilter): FleetRow[] {
  const q = f.q?.toLowerCase();
  return rows.filter(
    (r) =>
      (f.revoked || !r.revoked) &&
      (f.kind === undefined || r.kind === f.kind) &&
      (f.status === undefined || r.status === f.status) &&
      (f.online === undefined || r.online === f.online) &&
      (q === undefined ||
        r.device.toLowerCase().includes(q) ||
        (r.kind ?? "").toLowerCase().includes(q) ||
        (r.subject ?? "").toLowerCase().includes(q) ||
        f.subjectDevices?.has(r.device) === true),
  );
}

/** Worst first: a missing score (nothing to judge) goes last in either direction; ties by device id. */
export function sortRows(rows: FleetRow[], sort: FleetSort): FleetRow[] {
  const desc = sort.startsWith("-");
  const key = (desc ? sort.slice(1) : sort) as "score" | "device" | "lastSeen" | HealthComponent;
  const value = (r: FleetRow): number | string | null =>
    key === "device" ? r.device : key === "lastSeen" ? r.lastSeen : key === "score" ? r.score : r.components[key];
  return rows.sort((a, b) => {
    const x = value(a);
    const y = value(b);
    if (x === null || y === null) return x === y ? a.device.localeCompare(b.device) : x === null ? 1 : -1;
    const order = x < y ? -1 : x > y ? 1 : 0;
    return (desc ? -order : order) || a.device.localeCompare(b.device);
  });
}
