import { createServer, type AddressInfo, type Server } from "node:net";
import { Aedes } from "aedes";
import mqtt, { type MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { cappedMemoryPersistence } from "../../broker/offline-queue.ts";
import { waitFor } from "../support/wait.ts";

/** A bare Aedes with the capped in-memory persistence, and a real mqtt.js client. */
describe("offline queue cap", () => {
  let broker: Aedes | undefined;
  let server: Server | undefined;
  const clients: MqttClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) => (broker ? broker.close(() => resolve()) : resolve()));
  });

  it("keeps only the newest messages for an offline persistent session, and reports the oldest it drops", async () => {
    const drops: Array<{ clientId: string; topics: string[] }> = [];
    broker = await Aedes.createBroker({
      persistence: cappedMemoryPersistence(3, (clientId, dropped) =>
        drops.push({ clientId, topics: dropped.map((d) => d.topic) }),
      ),
    });
    const aedes = broker;
    server = createServer((socket) => aedes.handle(socket));
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const connect = (wait: boolean) => {
      const client = mqtt.connect(url, { clientId: "dev-1", clean: false, reconnectPeriod: 0 });
      clients.push(client);
      return wait
        ? new Promise<MqttClient>((resolve) => client.once("connect", () => resolve(client)))
        : Promise.resolve(client);
    };
    const first = await connect(true);
    await first.subscribeAsync("q/#", { qos: 1 });
    await first.endAsync();

    const publish = (n: number) =>
      new Promise<void>((resolve, reject) =>
        aedes.publish(
          { cmd: "publish", topic: `q/${n}`, payload: Buffer.from(String(n)), qos: 1, retain: false, dup: false },
          (err) => (err ? reject(err) : resolve()),
        ),
      );
    for (let n = 1; n <= 5; n += 1) await publish(n);
    expect(drops).toEqual([
      { clientId: "dev-1", topics: ["q/1"] },
      { clientId: "dev-1", topics: ["q/2"] },
    ]);

    const received: string[] = [];
    const second = await connect(false);
    second.on("message", (topic) => received.push(topic));
    await waitFor(() => received.length >= 3 && received, "the queued messages");
    expect(received).toEqual(["q/3", "q/4", "q/5"]);
    // Acknowledged, so nothing is queued any more: a third session gets nothing.
    await second.endAsync();
    const third = await connect(true);
    const again: string[] = [];
    third.on("message", (topic) => again.push(topic));
    await publish(6);
    await waitFor(() => again.includes("q/6"), "a live message");
    // QoS 1 may repeat q/6 (Aedes replays its queue right after CONNACK), but nothing older comes back.
    expect(new Set(again)).toEqual(new Set(["q/6"]));
  });

  it("drops a packet that authorizeForward refuses without touching the others queued for a persistent session", async () => {
    broker = await Aedes.createBroker({ persistence: cappedMemoryPersistence(100, () => {}) });
    const aedes = broker;
    // As the platform does for an action a device is no longer owed (withdrawn, erased).
    aedes.authorizeForward = (_client, packet) => (packet.topic.endsWith("/skip") ? null : packet);
    server = createServer((socket) => aedes.handle(socket));
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = mqtt.connect(url, { clientId: "dev-2", clean: false, reconnectPeriod: 0 });
    clients.push(client);
    await new Promise((resolve) => client.once("connect", resolve));
    await client.subscribeAsync("a/#", { qos: 1 });
    let closed = false;
    client.on("close", () => (closed = true));
    const received: string[] = [];
    client.on("message", (topic) => received.push(topic));

    // Published together, so both are in the session's queue, neither with a packet identifier yet.
    const publish = (topic: string) =>
      new Promise<void>((resolve, reject) =>
        aedes.publish(
          { cmd: "publish", topic, payload: Buffer.from(topic), qos: 1, retain: false, dup: false },
          (err) => (err ? reject(err) : resolve()),
        ),
      );
    await Promise.all(["a/1/skip", "a/2", "a/3/skip", "a/4"].map(publish));
    await waitFor(() => received.length >= 2 || closed, "the forwarded messages");
    expect(closed).toBe(false);
    expect(received.sort()).toEqual(["a/2", "a/4"]);
  });
});
