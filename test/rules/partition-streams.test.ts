import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ManagedRedis } from "../../cluster/redis-server.ts";
import type { RuleMessage } from "../../rules/message.ts";
import { partitionRouter, type PartitionHost, type PartitionRouter } from "../../rules/partitions.ts";
import { startTestRedis } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";

const PARTS = 4;
const PREFIX = "refeed:rules";
const telemetry = (device: string, subject: string, seq: number): RuleMessage => ({
  kind: "telemetry",
  device,
  subject,
  ts: Date.now(),
  tsFromDevice: false,
  micros: Date.now() * 1000 + seq,
  metrics: { seq },
});

/** The partition streams hold what is still to be evaluated and nothing more: nothing of a customer lingers in Redis. */
describe("rule partition streams on Redis", () => {
  let redis: ManagedRedis;
  let client: Redis;
  let router: PartitionRouter | undefined;
  // Records of `cust-held` are evaluated only when the test lets them go: they stay pending meanwhile.
  const held: Array<() => void> = [];
  const host: PartitionHost = {
    take: () => Promise.resolve(),
    drop: () => undefined,
    wants: (_msg, scope) => scope === "subject",
    run: (_part, msg) =>
      msg.subject === "cust-held" ? new Promise<void>((resolve) => held.push(resolve)) : Promise.resolve(),
  };
  const lengths = async () => {
    let total = 0;
    for (let p = 0; p < PARTS; p++) total += await client.xlen(`${PREFIX}:p${p}`);
    return total;
  };
  const subjectsInStreams = async () => {
    const found: string[] = [];
    for (let p = 0; p < PARTS; p++)
      for (const [, fields] of (await client.xrange(`${PREFIX}:p${p}`, "-", "+")) as Array<[string, string[]]>)
        found.push((JSON.parse(fields[fields.indexOf("m") + 1]!) as { subject: string }).subject);
    return found.sort();
  };

  beforeAll(async () => {
    redis = await startTestRedis();
    client = new Redis(redis.url);
    router = await partitionRouter(
      { url: redis.url, node: "node-1", partitions: PARTS, leaseMs: 1000 },
      host,
      pino({ level: "silent" }),
    );
    await waitFor(() => router!.owned().length === PARTS, "every partition owned");
  });
  afterAll(async () => {
    for (const release of held) release();
    await router?.close();
    client?.disconnect();
    await redis?.close();
  });

  it("trims away what every owner has acknowledged", async () => {
    for (let i = 0; i < 50; i++) router!.route(telemetry(`dev-${i % 5}`, `cust-${i % 7}`, i));
    await waitFor(async () => (await lengths()) === 0, "the evaluated entries trimmed from the streams", 15_000);
  });

  it("an erasure deletes the customer's entries still waiting, and only theirs", async () => {
    router!.route(telemetry("dev-a", "cust-held", 1));
    router!.route(telemetry("dev-a", "cust-held", 2));
    router!.route(telemetry("dev-b", "cust-kept", 3));
    await waitFor(() => held.length === 2, "the held customer's records being evaluated");
    // cust-kept's entry is acknowledged and trimmed; cust-held's stay pending, evaluations unfinished.
    await waitFor(
      async () => (await subjectsInStreams()).join() === "cust-held,cust-held",
      "only pending entries left",
    );
    expect(await router!.forgetSubject("cust-held")).toBe(2);
    expect(await subjectsInStreams()).toEqual([]);
  });
});
