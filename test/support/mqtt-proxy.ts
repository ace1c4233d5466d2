import net from "node:net";
import { parser } from "mqtt-packet";

export interface MqttProxy {
  /** mqtt://127.0.0.1:<port>, to give devices instead of the broker's address. */
  url: string;
  /** The next PUBACK a device sends is never forwarded: its connection is cut instead, as a lost link would. */
  losePuback(): void;
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
  let armed = false;
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
    upstream.on("data", (chunk) => client.write(chunk));
    const packets = parser();
    let sawPuback = false;
    packets.on("packet", (packet) => {
      if (packet.cmd === "puback") sawPuback = true;
    });
    client.on("data", (chunk: Buffer) => {
      sawPuback = false;
      packets.parse(chunk);
      if (armed && sawPuback) {
        armed = false;
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
    losePuback: () => {
      armed = true;
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
