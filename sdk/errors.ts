/**
 * Why the SDK refused or failed something. The connection refusals are named as the README's CONNACK
 * table names them (MQTT 3.1.1 return codes 1-5); the HTTP transport maps its 401 and 403 answers to
 * the same codes, since they mean the same to a device.
 */
export type DeviceErrorCode =
  | "UNACCEPTABLE_PROTOCOL_VERSION" // CONNACK 1: not MQTT 3.1.1
  | "IDENTIFIER_REJECTED" // CONNACK 2: the client id is not the device's own (nor `<id>:<suffix>`)
  | "SERVER_UNAVAILABLE" // CONNACK 3, or an HTTP 503: try again later (the SDK does)
  | "BAD_USER_NAME_OR_PASSWORD" // CONNACK 4 or HTTP 401: unknown device, wrong or rotated token
  | "NOT_AUTHORISED" // CONNACK 5 or HTTP 403: revoked device, keepalive out of range, another device's data
  | "UNREACHABLE" // no connection could be made (DNS, refused, TLS handshake, timeout); retried
  | "CONNECTION_LOST" // the connection closed with the publish unacknowledged (it was not queued)
  | "NOT_CONNECTED" // a publish while offline, without an offline queue
  | "QUEUE_OVERFLOW" // dropped from the full offline queue, oldest first, for a newer record
  | "INVALID_RECORD" // the record does not fit the contract; `reason` is the platform's dead-letter reason
  | "SUBSCRIPTION_REFUSED" // SUBACK 0x80 for the device's actions or state (not its topic, too many filters)
  | "INVALID_ACTION" // the platform sent an action or state this SDK cannot read (not given to the handler)
  | "INVALID_OPTIONS" // connect()'s options are wrong; the message names the field
  | "STORE_FAILED" // the de-duplication or queue store could not be read or written
  | "CLOSED"; // the device was closed

/** Refusals after which trying again with the same settings cannot help. */
export const FINAL_CODES: ReadonlySet<DeviceErrorCode> = new Set([
  "UNACCEPTABLE_PROTOCOL_VERSION",
  "IDENTIFIER_REJECTED",
  "BAD_USER_NAME_OR_PASSWORD",
  "NOT_AUTHORISED",
]);

export class DeviceError extends Error {
  constructor(
    readonly code: DeviceErrorCode,
    message: string,
    readonly details: {
      /** The CONNACK return code of a refused connection. */
      returnCode?: number;
      /** The HTTP status of a refused request. */
      status?: number;
      /** For INVALID_RECORD: the reason the platform would record (ingest/messages.ts `rejectReasons`). */
      reason?: string;
      cause?: unknown;
    } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "DeviceError";
  }

  /** Whether retrying with the same id, token and client id cannot succeed. */
  get final(): boolean {
    return FINAL_CODES.has(this.code);
  }
}

const CONNACK: Record<number, [DeviceErrorCode, string]> = {
  1: ["UNACCEPTABLE_PROTOCOL_VERSION", "unacceptable protocol version: Refeed speaks MQTT 3.1.1 (protocolVersion 4)"],
  2: ["IDENTIFIER_REJECTED", "identifier rejected: the client id must be the device id or '<device id>:<suffix>'"],
  3: ["SERVER_UNAVAILABLE", "server unavailable"],
  4: ["BAD_USER_NAME_OR_PASSWORD", "bad user name or password: unknown device, or a wrong or rotated token"],
  5: ["NOT_AUTHORISED", "not authorised: the device is revoked, or its keepalive is 0 or above the broker's maximum"],
};

/** The typed error of a CONNACK refusal. */
export function connackError(returnCode: number): DeviceError {
  const [code, message] = CONNACK[returnCode] ?? ["SERVER_UNAVAILABLE", `refused with CONNACK code ${returnCode}`];
  return new DeviceError(code, `connection refused (CONNACK ${returnCode}): ${message}`, { returnCode });
}
