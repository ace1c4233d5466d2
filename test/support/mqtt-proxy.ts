import net from "node:net";
import { parser } from "mqtt-packet";

export interface MqttProxy {
  /** mqtt://127.0.0.1:<port>, to give devices instead of the broker's address. */
  url: string;
  /**
   * The device's next PUBACK of a message on a topic ending in `suffix` (its actions, by default) is
   * never forwarded: its connection is cut instead, as a lost link would.
   */
  losePuback(suffix?: string): void;
  /** PUBACKs lost so far. */
  readonly lost: number;
  close(): Promise<void>;
}

/**
 * A TCP relay in front of the broker that can lose a device's PUBACK with its connection: the
 * broker then never learns the action was delivered and sends it again when the device is back,
 * which is how a duplicate reaches a real device.
 */
export async function startMqttProxy(brokerUrl: string): Promise<MqttProxy> {
  const target = new URL(brokerUrl);
  const sockets = new Set<net.Socket>();
  let armed: string | undefined;
  let lost = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    const cut = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", () => sockets.delete(client) && upstream.destroy());
    upstream.on("close", () => sockets.delete(upstream) && client.destroy());
    client.on("error", cut);
    upstream.on("error", cut);
    // What the broker sends, to know which message each PUBACK of the device acknowledges.
    const topicOf = new Map<number, string>();
    const down = parser();
    down.on("packet", (packet) => {
      if (packet.cmd === "publish" && packet.messageId !== undefined) topicOf.set(packet.messageId, packet.topic);
    });
    upstream.on("data", (chunk: Buffer) => {
      down.parse(chunk);
      client.write(chunk);
    });
    const up = parser();
    let hit = false;
    up.on("packet", (packet) => {
      if (packet.cmd === "puback" && armed && topicOf.get(packet.messageId!)?.endsWith(armed)) hit = true;
    });
    client.on("data", (chunk: Buffer) => {
      hit = false;
      up.parse(chunk);
      if (hit) {
        armed = undefined;
        lost += 1;
        cut();
        return;
      }
      upstream.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    losePuback: (suffix = "/actions") => {
      armed = suffix;
    },
    get lost() {
      return lost;
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
