import type { Random } from "../random.ts";
import type { Publish } from "./types.ts";

export interface SessionSource {
  /** One session of the customer in front of the device, start to end, feedback included. */
  session(): Publish[];
  telemetry(): Publish;
}

/**
 * A device's stream: sessions one after another, with telemetry between
 * them about `telemetryShare` of the time.
 */
export function sessionLoop(random: Random, telemetryShare: number, source: SessionSource): () => Publish {
  let queue: Publish[] = [];
  return () => {
    if (queue.length === 0) {
      if (random.chance(telemetryShare)) return source.telemetry();
      queue = source.session();
    }
    return queue.shift()!;
  };
}

export function event(
  subject: string | undefined,
  name: string,
  props?: Record<string, string | number | boolean | null>,
): Publish {
  return { channel: "events", record: { ...(subject ? { subject } : {}), name, ...(props ? { props } : {}) } };
}

export function telemetry(metrics: Record<string, string | number | boolean>): Publish {
  return { channel: "telemetry", record: { metrics } };
}

/** Rounds for display-like values (a zoom of 1.5, a temperature of 31.2). */
export const round1 = (n: number) => Math.round(n * 10) / 10;
