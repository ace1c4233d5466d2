import { randomUUID } from "node:crypto";
import type { AuthenticateError, Client } from "aedes";
import type { Logger } from "pino";
import type { Registry } from "../registry/index.ts";
import { authorizeClientId } from "./acl.ts";
import type { PacketGuard } from "./packet-limit.ts";
import type { Sessions } from "./sessions.ts";

/** MQTT 3.1.1 CONNACK return codes (3.1.1 has no others; there is no code for "keepalive not allowed"). */
export const ReturnCode = {
  IDENTIFIER_REJECTED: 2,
  SERVER_UNAVAILABLE: 3,
  BAD_CREDENTIALS: 4,
  NOT_AUTHORIZED: 5,
} as const;

function refusal(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode });
}

interface ConnectFacts {
  clientId: string;
  clean: boolean;
  keepalive: number;
}

export interface IdentityDeps {
  registry: Registry;
  sessions: Sessions;
  log: Logger;
  maxKeepaliveSeconds: number;
}

/**
 * CONNECT checks, in Aedes' preConnect and authenticate hooks: username = the
 * device id, password = its token, a client id that names one of the
 * device's own sessions, and a keepalive within the limit. Each refusal is
 * logged with the device and the reason, and answered with the closest
 * MQTT 3.1.1 return code.
 */
export function identityHooks(deps: IdentityDeps) {
  const { registry, sessions, log } = deps;
  // What CONNECT said that the authenticate hook is not given.
  const facts = new WeakMap<Client, ConnectFacts>();

  return {
    preConnect: (
      client: Client,
      packet: { clientId: string; clean?: boolean; keepalive?: number },
      callback: (error: Error | null, ok: boolean) => void,
    ) => {
      facts.set(client, { clientId: packet.clientId, clean: packet.clean ?? true, keepalive: packet.keepalive ?? 0 });
      callback(null, true);
    },

    authenticate: (
      client: Client,
      username: string | undefined,
      password: Buffer | undefined,
      callback: (error: AuthenticateError | null, ok: boolean | null) => void,
    ) => {
      const connect = facts.get(client) ?? { clientId: client.id, clean: client.clean, keepalive: 0 };
      const id = username ?? "";
      const token = password?.toString("utf8") ?? "";
      const refuse = (reason: string, code: number, message: string, extra: Record<string, unknown> = {}) => {
        log.warn({ device: id || undefined, clientId: connect.clientId, reason, ...extra }, "connection refused");
        callback(refusal(message, code), false);
      };
      if (!id || !token)
        return refuse(
          "missing_credentials",
          ReturnCode.BAD_CREDENTIALS,
          "username (device id) and password (token) are required",
        );
      const naming = authorizeClientId(id, connect.clientId, connect.clean, () => randomUUID());
      if (!naming.allow)
        return refuse(
          naming.code === "empty_persistent" ? "empty_client_id" : "client_id_mismatch",
          ReturnCode.IDENTIFIER_REJECTED,
          naming.reason,
        );
      if (connect.keepalive < 1 || connect.keepalive > deps.maxKeepaliveSeconds) {
        return refuse(
          "keepalive_out_of_range",
          ReturnCode.NOT_AUTHORIZED,
          `keepalive must be 1-${deps.maxKeepaliveSeconds} seconds`,
          { keepalive: connect.keepalive },
        );
      }
      registry.authenticate(id, token).then(
        (result) => {
          if (!result.ok)
            return refuse(
              result.reason,
              result.reason === "revoked" ? ReturnCode.NOT_AUTHORIZED : ReturnCode.BAD_CREDENTIALS,
              `authentication failed: ${result.reason}`,
            );
          if (client.closed) return; // the connection went away during the check
          // An empty client id was named after the device; Aedes registers the client under client.id after this hook.
          (client as { id: string }).id = naming.clientId;
          sessions.open(client, client.conn as PacketGuard, id, naming.clientId);
          callback(null, true);
        },
        (err: Error) => {
          log.error({ device: id, err: err.message }, "authentication error");
          callback(refusal("authentication unavailable", ReturnCode.SERVER_UNAVAILABLE), false);
        },
      );
    },
  };
}
