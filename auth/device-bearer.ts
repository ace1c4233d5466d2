import type { FastifyRequest } from "fastify";
import { AuthError } from "./errors.ts";
import { bearer } from "./require-role.ts";

/** What a device-token check answers (the registry's `authenticateBearer`). */
export type DeviceCheck = { ok: true; device: { id: string } } | { ok: false; reason: string };

/**
 * The device a request's bearer token belongs to. Only a device token is taken
 * (routes where a device acts for itself: HTTP ingest, its event stream), so
 * the admin token is refused like any other.
 */
export async function deviceOf(
  request: FastifyRequest,
  check: (token: string) => Promise<DeviceCheck>,
): Promise<string> {
  const token = bearer(request);
  if (!token) throw new AuthError("UNAUTHORIZED", "missing 'Authorization: Bearer <device token>' header");
  const auth = await check(token);
  if (auth.ok) return auth.device.id;
  if (auth.reason === "revoked") throw new AuthError("DEVICE_REVOKED", "this device is revoked");
  throw new AuthError("UNAUTHORIZED", "unknown or invalid device token");
}
