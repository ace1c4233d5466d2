import type { DeviceMessage } from "../ingest/index.ts";
import type { Store } from "../store/index.ts";
import { history } from "../ingest/queries.ts";
import { microsOfRow } from "../store/clock.ts";

const DAY = 86_400_000;
const TAGS = new Set(["time", "device", "subject", "event"]);

/**
 * Reads stored messages of the given triggers (telemetry, feedback,
 * event:<name>) between two times, a day at a time so memory stays bounded,
 * and hands them over in time order. Only what consent let ingest store
 * with a subject comes back with one.
 */
export async function readHistory(
  store: Store,
  triggers: ReadonlySet<string>,
  from: number,
  to: number,
  onMessage: (msg: DeviceMessage) => void,
  devices?: readonly string[],
): Promise<number> {
  const events = [...triggers].filter((t) => t.startsWith("event:")).map((t) => t.slice("event:".length));
  const kinds: Kind[] = [];
  if (triggers.has("telemetry")) kinds.push("telemetry");
  if (triggers.has("feedback")) kinds.push("feedback");
  if (events.length > 0) kinds.push("event");
  if (kinds.length === 0) return 0;
  let count = 0;
  for (let start = from; start < to; start += DAY) {
    const end = Math.min(to, start + DAY);
    const only = { events, ...(devices ? { devices } : {}) };
    const batch: DeviceMessage[] = [];
    for (const kind of kinds)
      for (const row of await store.query(history(kind, start, end, only))) batch.push(toMessage(kind, row));
    batch.sort((a, b) => a.ts - b.ts);
    for (const msg of batch) onMessage(msg);
    count += batch.length;
  }
  return count;
}

type Kind = DeviceMessage["kind"];

function toMessage(kind: Kind, row: Record<string, unknown> & { time: Date }): DeviceMessage {
  const base = {
    device: String(row.device),
    subject: typeof row.subject === "string" ? row.subject : undefined,
    ts: row.time.getTime(),
    tsFromDevice: true,
    micros: microsOfRow(row.time),
  };
  if (kind === "event") {
    let props: Record<string, number | boolean | string | null> = {};
    try {
      props = typeof row.props === "string" ? (JSON.parse(row.props) as typeof props) : {};
    } catch {
      // a point written by something else; its props are unreadable but the event still counts
    }
    return { ...base, kind: "event", name: String(row.event), props };
  }
  if (kind === "feedback") {
    return {
      ...base,
      kind: "feedback",
      rating: row.rating == null ? undefined : Number(row.rating),
      text: typeof row.text === "string" ? row.text : undefined,
    };
  }
  const metrics: Record<string, number | boolean | string> = {};
  for (const [k, v] of Object.entries(row))
    if (!TAGS.has(k) && v !== null && (typeof v === "number" || typeof v === "boolean" || typeof v === "string"))
      metrics[k] = v;
  return { ...base, kind: "telemetry", metrics };
}
