import type { AedesPublishPacket, Client, PublishPacket, Subscription } from "aedes";
import type { Logger } from "pino";
import type { MqttLimits } from "../config/schema.ts";
import type { Channel, Ingest } from "../ingest/index.ts";
import type { Registry } from "../registry/index.ts";
import { authorize, channelOf } from "./acl.ts";
import type { PublishRateLimiter } from "./limits.ts";
import type { DisconnectReason, Presence } from "./presence.ts";
import type { Sessions } from "./sessions.ts";
import type { Outbox } from "../actions/delivery.ts";
import { actionIdOf } from "./redelivery.ts";

export interface AuthorizeDeps {
  sessions: Sessions;
  registry: Registry;
  ingest: Ingest;
  presence: Presence;
  rate: PublishRateLimiter;
  limits: MqttLimits;
  log: Logger;
  /** Which actions each device is still owed. */
  outbox: Pick<Outbox, "isPending">;
}

/**
 * Aedes' authorizePublish, authorizeSubscribe and authorizeForward: the topic
 * ACL, QoS 0/1 only, and the payload, rate and subscription limits. In
 * MQTT 3.1.1 a refused publish can only close the connection (no PUBACK is
 * sent, so nothing refused is ever acknowledged); a refused subscription gets
 * SUBACK 0x80.
 */
export function authorizeHooks(deps: AuthorizeDeps) {
  const { sessions, log, limits } = deps;

  return {
    authorizePublish: (client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void) => {
      // Aedes' own guard, kept: nobody publishes into $SYS.
      if (packet.topic.startsWith("$SYS/")) return callback(new Error("$SYS topic is reserved"));
      const session = sessions.of(client);
      if (!session) return callback(new Error("only an authenticated device publishes"));
      const { device } = session;
      // Aedes publishes the last will while it closes the client.
      const will = client!.closed;
      const payload = packet.payload as Buffer;
      const refuse = (reason: DisconnectReason, message: string, extra: Record<string, unknown> = {}) => {
        log.warn(
          { device, clientId: session.clientId, topic: packet.topic, reason, ...extra },
          will ? "last will refused" : "publish refused",
        );
        session.reason ??= reason;
        callback(new Error(message));
      };
      const decision = authorize(device, "publish", packet.topic);
      if (!decision.allow) return refuse("acl_denied", decision.reason);
      if (packet.qos === 2) return refuse("qos2_refused", "QoS 2 is not supported; use QoS 0 or 1");
      if (deps.registry.get(device)?.revoked) return refuse("revoked", "device revoked");
      if (payload.length > limits.maxPayloadBytes) {
        return refuse("payload_too_large", `payload larger than ${limits.maxPayloadBytes} bytes`, {
          bytes: payload.length,
          limit: limits.maxPayloadBytes,
        });
      }
      if (!will && !deps.rate.allow(device, Date.now())) {
        return refuse("rate_limited", "publish rate limit exceeded", {
          rate: limits.publishRate,
          burst: limits.publishBurst,
        });
      }
      deps.presence.seen(device);
      if (will) deps.presence.lastWill(device, session.clientId, packet.topic);
      const result = deps.ingest.accept(device, channelOf(packet.topic) as Channel, payload);
      // Refused messages are acknowledged once their dead letter is durable: resending them cannot help.
      if (packet.qos === 0) return callback(null);
      // Acknowledged means durable: the PUBACK is written only after this callback.
      result.durable.then(
        () => callback(null),
        (err: Error) => callback(err),
      );
    },

    authorizeSubscribe: (
      client: Client,
      sub: Subscription,
      callback: (error: Error | null, subscription?: Subscription | null) => void,
    ) => {
      const session = sessions.of(client);
      if (!session) return callback(null, null);
      const refuse = (reason: string, detail: string) => {
        log.warn(
          { device: session.device, clientId: session.clientId, topic: sub.topic, reason, detail },
          "subscription refused",
        );
        callback(null, null); // SUBACK 0x80 for this filter
      };
      const decision = authorize(session.device, "subscribe", sub.topic);
      if (!decision.allow) return refuse("acl_denied", decision.reason);
      if (!session.subscriptions.has(sub.topic) && session.subscriptions.size >= limits.maxSubscriptions) {
        return refuse("too_many_subscriptions", `at most ${limits.maxSubscriptions} subscriptions per connection`);
      }
      session.subscriptions.add(sub.topic);
      callback(null, { ...sub, qos: Math.min(sub.qos, 1) as 0 | 1 });
    },

    authorizeForward: (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null => {
      const session = sessions.of(client);
      if (!session || !authorize(session.device, "forward", packet.topic).allow) return null;
      // Aedes asks again for each packet a persistent session kept while offline: an action the
      // device no longer needs (delivered on another connection, withdrawn, or erased with its
      // customer) is dropped from the queue, not sent late.
      if (packet.topic === `devices/${session.device}/actions`) {
        const id = actionIdOf(packet.payload as Buffer);
        if (id === undefined || !deps.outbox.isPending(session.device, id)) return null;
      }
      return packet;
    },
  };
}
