import { copyFile } from "node:fs/promises";
import path from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, expect } from "vitest";
import { api, startTestPlatform, type TestPlatform } from "./platform.ts";
import { ROOT } from "./process.ts";

/**
 * One platform for a story's tests, started with the named example rules
 * read at start as an operator would have them; call the result inside a test.
 */
export function storyPlatform(...rules: string[]): () => TestPlatform {
  let t: TestPlatform | undefined;
  beforeAll(async () => {
    t = await startTestPlatform();
    await useExampleRules(t, ...rules);
    await t.restart();
  });
  afterAll(() => t?.close());
  return () => t!;
}

/** Puts example rule files into the platform's rules directory before it (re)starts. */
export async function useExampleRules(t: TestPlatform, ...names: string[]): Promise<void> {
  for (const name of names)
    await copyFile(path.join(ROOT, "examples/rules", `${name}.yaml`), path.join(t.rulesDir, `${name}.yaml`));
}

/** The customer opts in, as the consent API records it. */
export async function optIn(
  t: TestPlatform,
  subject: string,
  purposes: Record<string, boolean> = { analytics: true, personalization: true, feedback: true },
): Promise<void> {
  const res = await api(t, "PUT", `/api/subjects/${subject}/consent`, purposes);
  expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
}

type Event = { name: string; props?: Record<string, unknown>; subject?: string; ts?: number };

let settle: () => Promise<void> = () => Promise.resolve();

/** What a publish waits for after its PUBACK (a cluster: its rule partitions to have evaluated what was routed). */
export function settleAfterPublish(wait: () => Promise<void>): void {
  settle = wait;
}

/**
 * Publishes events as one batch at QoS 1; resolves once the platform acknowledged them (durable on disk;
 * InfluxDB has them moments later) and the rules evaluated them.
 */
export async function publishEvents(client: MqttClient, device: string, events: Event[]): Promise<void> {
  await client.publishAsync(`devices/${device}/events`, JSON.stringify(events), { qos: 1 });
  await settle();
}

/** One app or device session of a customer: start, the events in it, end. */
export function session(subject: string, events: Array<Omit<Event, "subject">>): Event[] {
  return [
    { name: "session_start", subject },
    ...events.map((e) => ({ ...e, subject })),
    { name: "session_end", subject },
  ];
}

export async function ack(client: MqttClient, device: string, action: string, status: string): Promise<void> {
  await client.publishAsync(`devices/${device}/acks`, JSON.stringify({ action, status }), { qos: 1 });
}
