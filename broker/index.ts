import { createServer, type Server, type AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { Aedes, type AuthenticateError, type Client } from "aedes";
import type { Logger } from "pino";
import type { MqttConfig } from "../config/schema.ts";
import type { Ingest, Channel } from "../ingest/index.ts";
import type { Registry } from "../registry/index.ts";
import type { Publisher } from "../actions/index.ts";
import { authorize, channelOf } from "./acl.ts";

export interface Broker extends Publisher {
  /** Takes a client connection from another transport (the WebSocket route). */
  handle(stream: Duplex): void;
  readonly address: { host: string; port: number };
  readonly connectedClients: number;
  close(): Promise<void>;
}

export interface BrokerDeps {
  registry: Registry;
  ingest: Ingest;
  log: Logger;
}

/** MQTT 3.1.1 CONNACK return codes. */
const BAD_CREDENTIALS = 4;
const NOT_AUTHORIZED = 5;
const IDENTIFIER_REJECTED = 2;

function refusal(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export async function startBroker(config: MqttConfig, deps: BrokerDeps): Promise<Broker> {
  const log = deps.log.child({ part: "broker" });
  const aedes = await Aedes.createBroker({ heartbeatInterval: 60_000 });
  const deviceOf = (client: Client | null): string | undefined => (client as (Client & { device?: string }) | null)?.device;

  aedes.authenticate = (client, username, password, callback) => {
    const id = username ?? "";
    const token = password?.toString("utf8") ?? "";
    if (!id || !token) {
      log.warn({ clientId: client.id, reason: "missing_credentials" }, "connection refused");
      return callback(refusal("username (device id) and password (token) are required", BAD_CREDENTIALS), false);
    }
    // A device may hold several connections (one per process) as `id:suffix`,
    // but never a client id that names another device's session.
    if (client.id !== id && !client.id.startsWith(`${id}:`)) {
      log.warn({ device: id, clientId: client.id, reason: "client_id_mismatch" }, "connection refused");
      return callback(refusal("client id must be the device id (or device id + ':' + suffix)", IDENTIFIER_REJECTED), false);
    }
    deps.registry.authenticate(id, token).then(
      (result) => {
        if (!result.ok) {
          log.warn({ device: id, reason: result.reason }, "connection refused");
          return callback(refusal(`authentication failed: ${result.reason}`, result.reason === "revoked" ? NOT_AUTHORIZED : BAD_CREDENTIALS), false);
        }
        (client as Client & { device?: string }).device = id;
        callback(null, true);
      },
      (err: Error) => {
        log.error({ device: id, err: err.message }, "authentication error");
        callback(refusal("authentication unavailable", 3), false);
      },
    );
  };

  aedes.authorizePublish = (client, packet, callback) => {
    const device = deviceOf(client);
    // Aedes' own guard, kept: nobody publishes into $SYS.
    if (packet.topic.startsWith("$SYS/")) return callback(new Error("$SYS topic is reserved"));
    if (!device) return callback(null); // the broker's own will/internal publishes
    const decision = authorize(device, "publish", packet.topic);
    if (!decision.allow) {
      log.warn({ device, topic: packet.topic, reason: decision.reason }, "publish refused");
      return callback(new Error(decision.reason));
    }
    if (packet.qos === 2) {
      log.warn({ device, topic: packet.topic, reason: "qos2_not_supported" }, "publish refused");
      return callback(new Error("QoS 2 is not supported; use QoS 0 or 1"));
    }
    const result = deps.ingest.accept(device, channelOf(packet.topic) as Channel, packet.payload as Buffer);
    // Refused messages are acknowledged once their dead letter is durable: resending them cannot help.
    if (packet.qos === 0) return callback(null);
    // Acknowledged means durable: the PUBACK is written only after this callback.
    result.durable.then(() => callback(null), (err: Error) => callback(err));
  };

  aedes.authorizeSubscribe = (client, sub, callback) => {
    const device = deviceOf(client);
    const decision = device ? authorize(device, "subscribe", sub.topic) : { allow: false as const, reason: "not authenticated" };
    if (!decision.allow) {
      log.warn({ device, topic: sub.topic, reason: decision.reason }, "subscription refused");
      return callback(null, null); // SUBACK 0x80 for this filter
    }
    callback(null, { ...sub, qos: Math.min(sub.qos, 1) as 0 | 1 });
  };

  aedes.authorizeForward = (client, packet) => {
    const device = deviceOf(client);
    if (!device) return null;
    return packet.topic.startsWith(`devices/${device}/`) ? packet : null;
  };

  aedes.on("clientError", (client, err) => log.debug({ device: deviceOf(client), err: err.message }, "client error"));
  aedes.on("connectionError", (client, err) => log.debug({ clientId: client.id, err: err.message }, "connection error"));
  aedes.on("clientReady", (client) => log.debug({ device: deviceOf(client) }, "device connected"));
  aedes.on("clientDisconnect", (client) => log.debug({ device: deviceOf(client) }, "device disconnected"));

  const server: Server = createServer((socket) => aedes.handle(socket));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const bound = server.address() as AddressInfo;

  return {
    handle(stream) {
      aedes.handle(stream);
    },
    address: { host: config.host, port: bound.port },
    get connectedClients() {
      return aedes.connectedClients;
    },
    publish(topic, payload, options) {
      return new Promise((resolve, reject) =>
        aedes.publish({ cmd: "publish", topic, payload: Buffer.from(payload), qos: options.qos, retain: options.retain, dup: false }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
    },
    async close() {
      // Stop accepting first; the server's callback fires once Aedes has closed every client.
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await stopped;
    },
  };
}
