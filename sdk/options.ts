import { z } from "zod";
import { DEVICE_ID } from "../registry/ids.ts";
import type { QueueStore } from "./outbox.ts";
import type { SeenStore } from "./seen.ts";

const store = <T>(what: string) =>
  z.custom<T>(
    (v) =>
      typeof v === "object" &&
      v !== null &&
      typeof (v as { load?: unknown }).load === "function" &&
      typeof (v as { save?: unknown }).save === "function",
    `${what} must have load() and save()`,
  );
const pem = z.union([z.string(), z.instanceof(Uint8Array)]);

/** connect()'s options, parsed once at the edge: a wrong one is an INVALID_OPTIONS error naming it. */
export const deviceOptionsSchema = z.strictObject({
  /** mqtt://, mqtts:// (TLS), ws:// or wss:// (MQTT over WebSocket, `/mqtt`), http(s):// (server-sent events and HTTP). */
  url: z
    .string()
    .regex(/^(mqtts?|wss?|https?):\/\/[^/]/, "a URL with scheme mqtt, mqtts, ws, wss, http or https")
    .refine((u) => URL.canParse(u), "not a URL"),
  id: z.string().regex(DEVICE_ID, "a device id: 1-64 letters, digits, '.', '_' or '-'"),
  token: z.string().min(1, "the device token from provisioning"),
  /** The device id (default), or `<id>:<suffix>` for a second connection of the same device. */
  clientId: z.string().optional(),
  /** A persistent session (default): what the broker queued for the device while it was away waits for it. */
  clean: z.boolean().default(false),
  keepaliveS: z.number().int().min(1).max(900).default(60),
  connectTimeoutMs: z.number().int().positive().default(30_000),
  /** TCP_NODELAY: without it a device that publishes a few times a second waits 20-40 ms more per PUBACK and action. */
  noDelay: z.boolean().default(true),
  backoff: z
    .strictObject({ baseMs: z.number().positive().default(1000), maxMs: z.number().positive().default(30_000) })
    .default({ baseMs: 1000, maxMs: 30_000 }),
  /** [0, 1): the backoff's jitter (Math.random by default; the simulator passes its seeded one). */
  random: z.custom<() => number>((v) => typeof v === "function", "a function returning [0, 1)").optional(),
  tls: z
    .strictObject({
      ca: pem.optional(),
      cert: pem.optional(),
      key: pem.optional(),
      rejectUnauthorized: z.boolean().optional(),
      servername: z.string().optional(),
    })
    .optional(),
  /** De-duplication of actions by id: how many ids are remembered, and where they are kept between runs. */
  seen: z
    .strictObject({ max: z.number().int().positive().default(1000), store: store<SeenStore>("seen.store").optional() })
    .default({ max: 1000 }),
  /** The offline queue; without it a publish while offline is refused with NOT_CONNECTED. */
  queue: z
    .strictObject({
      max: z.number().int().positive(),
      store: store<QueueStore>("queue.store").optional(),
      /** Records per second when the queue drains: keep it under the broker's per-device rate (50/s). */
      rate: z.number().positive().default(20),
      window: z.number().int().positive().default(10),
    })
    .optional(),
  /** The platform's REFEED_INGEST_MAX_FIELDS, if it is not the default. */
  maxFields: z.number().int().positive().default(64),
  /**
   * The platform's payload limit (REFEED_MQTT_MAX_PAYLOAD_BYTES and REFEED_INGEST_MAX_PAYLOAD_BYTES):
   * the broker closes the connection on a larger publish, which would come back at every reconnect.
   */
  maxPayloadBytes: z.number().int().positive().default(65_536),
  /** Stamp records without `ts` with the device clock (never the same ms twice), so a redelivery is stored once. */
  stampTs: z.boolean().default(true),
  /** Subscribe to the device's actions and state (default); off for a connection that only publishes. */
  subscribe: z.boolean().default(true),
});
export type DeviceOptions = z.input<typeof deviceOptionsSchema>;
export type ParsedOptions = z.output<typeof deviceOptionsSchema>;
