import type { BaseDevice } from "./base.ts";
import { DeviceError } from "./errors.ts";
import { HttpDevice } from "./http.ts";
import { MqttDevice } from "./mqtt.ts";
import { deviceOptionsSchema, type DeviceOptions } from "./options.ts";

/** A device of any transport: MQTT over TCP, TLS or WebSocket, or server-sent events and HTTP. */
export type Device = BaseDevice;

/** A device, not connected yet: register handlers, then `start()`. */
export function createDevice(options: DeviceOptions): Device {
  const parsed = deviceOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new DeviceError("INVALID_OPTIONS", `${issue.path.join(".") || "options"}: ${issue.message}`);
  }
  return /^https?:/.test(parsed.data.url) ? new HttpDevice(parsed.data) : new MqttDevice(parsed.data);
}

/**
 * Connects and resolves once connected. A refusal that retrying cannot mend (wrong token, revoked
 * device, foreign client id) rejects with its DeviceError; an unreachable platform is retried with
 * backoff (each failure an `error` event) until `timeoutMs`, if given, rejects with the last error.
 */
export async function connect(options: DeviceOptions & { timeoutMs?: number }): Promise<Device> {
  const { timeoutMs, ...rest } = options;
  const device = createDevice(rest);
  let last: DeviceError | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = new Promise<void>((resolve, reject) => {
    const done = (err?: DeviceError) => {
      offConnect();
      offError();
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    const offConnect = device.on("connect", () => done());
    const offError = device.on("error", (err) => {
      last = err;
      if (err.final) done(err);
    });
    if (timeoutMs !== undefined)
      timer = setTimeout(
        () => done(last ?? new DeviceError("UNREACHABLE", `not connected within ${timeoutMs} ms to ${rest.url}`)),
        timeoutMs,
      );
  });
  await device.start();
  try {
    await outcome;
  } catch (err) {
    await device.close({ graceMs: 0 });
    throw err;
  }
  return device;
}
