import type { Logger } from "pino";
import type { Outbox } from "../actions/delivery.ts";
import type { Session } from "./sessions.ts";

export function actionIdOf(payload: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(payload.toString("utf8")) as { id?: unknown };
    return typeof parsed.id === "string" ? parsed.id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The broker's half of reliable action delivery: it follows action packets on
 * the wire (packet identifier -> action id) so a device's PUBACK marks the
 * action delivered, and it resends what is pending when a session of the
 * device subscribes to its actions.
 */
export function redelivery(outbox: Outbox, log: Logger) {
  const topicOf = (session: Session) => `devices/${session.device}/actions`;

  return {
    /** A QoS 1 publish was written to the session. */
    sent(session: Session, messageId: number, topic: string, payload: Buffer): void {
      if (topic !== topicOf(session)) return;
      const id = actionIdOf(payload);
      if (id === undefined) return;
      (session.inFlight ??= new Map()).set(messageId, id);
      (session.sent ??= new Set()).add(id);
    },

    /** The session acknowledged a packet. */
    acked(session: Session, messageId: number): void {
      const id = session.inFlight?.get(messageId);
      if (id === undefined) return;
      session.inFlight!.delete(messageId);
      outbox.delivered(session.device, id);
    },

    /** Sends the session what its device has not received, unless this connection already carried it. */
    resend(session: Session): void {
      if (!session.subscriptions.has(topicOf(session))) return;
      const pending = outbox.pendingFor(session.device).filter((action) => !session.sent?.has(action.id));
      if (pending.length === 0) return;
      log.info(
        { device: session.device, clientId: session.clientId, actions: pending.length },
        "resending pending actions",
      );
      for (const action of pending) {
        (session.sent ??= new Set()).add(action.id);
        session.client.publish(
          {
            cmd: "publish",
            topic: topicOf(session),
            payload: Buffer.from(action.payload),
            qos: 1,
            retain: false,
            dup: false,
          },
          (err) => {
            if (err) log.debug({ device: session.device, action: action.id, err: err.message }, "resend not written");
          },
        );
      }
    },
  };
}
