import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import type { Authenticator } from "../../auth/index.ts";
import { formatDuration, parseDuration } from "../../config/duration.ts";
import { fleetSorts, timelineTypes, type Health, type TimelineType } from "../../health/index.ts";
import { RegistryError } from "../../registry/index.ts";
import { errorBody, RequestError } from "../errors.ts";
import { defineRoute, type Answer, type RouteDef } from "../route.ts";
import { idParams } from "../schemas.ts";

const MAX_WINDOW_MS = 90 * 86_400_000;
const flag = z.enum(["true", "false"], { error: "true or false" }).transform((v) => v === "true");
const whole = (min: number, max: number) =>
  z.coerce
    .number({ error: `a whole number from ${min} to ${max}` })
    .int(`a whole number from ${min} to ${max}`)
    .min(min, `a whole number from ${min} to ${max}`)
    .max(max, `a whole number from ${min} to ${max}`);

/** A duration up to `max`, such as 24h or 7d. */
export const durationParam = (max: number, min = 1) =>
  z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined || ms < min || ms > max) {
      ctx.addIssue({
        code: "custom",
        message: `a duration such as 24h or 7d, from ${formatDuration(min)} to ${formatDuration(max)}`,
      });
      return z.NEVER;
    }
    return ms;
  });

/** ISO-8601 with an offset, or epoch milliseconds. */
const instant = z.string().transform((text, ctx) => {
  const ms = /^\d{1,16}$/.test(text) ? Number(text) : /T.*(Z|[+-]\d\d:?\d\d)$/.test(text) ? Date.parse(text) : NaN;
  if (!Number.isFinite(ms)) {
    ctx.addIssue({
      code: "custom",
      message: "an ISO-8601 time with offset (2026-05-04T10:00:00Z) or epoch milliseconds",
    });
    return z.NEVER;
  }
  return ms;
});

const fleetQuery = z.strictObject({
  window: durationParam(MAX_WINDOW_MS, 60_000).optional(),
  q: z.string().trim().min(1).max(128).optional(),
  kind: z.string().max(32).optional(),
  status: z.enum(["good", "fair", "poor", "unknown"], { error: "one of good, fair, poor, unknown" }).optional(),
  online: flag.optional(),
  revoked: flag.optional(),
  sort: z.enum(fleetSorts, { error: `one of ${fleetSorts.join(", ")}` }).default("score"),
  offset: whole(0, 1_000_000).default(0),
  limit: whole(1, 500).default(50),
});

const deviceQuery = z.strictObject({ window: durationParam(MAX_WINDOW_MS, 60_000).optional() });

const timelineQuery = z.strictObject({
  from: instant.optional(),
  to: instant.optional(),
  /** Shorthand for from = to - last. */
  last: durationParam(MAX_WINDOW_MS, 60_000).optional(),
  cursor: z.string().max(64).optional(),
  limit: whole(1, 1000).default(100),
  types: z
    .string()
    .transform((text, ctx) => {
      const names = text
        .split(",")
        .map((t) => t.trim())
        .filter(Boolean);
      const unknown = names.filter((t) => !(timelineTypes as readonly string[]).includes(t));
      if (names.length === 0 || unknown.length > 0) {
        ctx.addIssue({
          code: "custom",
          message: `a comma-separated list of ${timelineTypes.join(", ")}${unknown.length ? ` (not ${unknown.join(", ")})` : ""}`,
        });
        return z.NEVER;
      }
      return new Set(names as TimelineType[]);
    })
    .optional(),
  interval: durationParam(86_400_000, 10_000).optional(),
});

const window = { window: z.string() };
const fleetPage = z
  .object({
    ...window,
    from: z.string(),
    to: z.string(),
    computedAt: z.string(),
    total: z.number().int(),
    offset: z.number().int(),
    limit: z.number().int(),
    summary: z.record(z.string(), z.number()),
    devices: z.array(z.object({ device: z.string() }).loose()),
  })
  .meta({
    example: {
      window: "7d",
      from: "2026-04-27T10:00:00.000Z",
      to: "2026-05-04T10:00:00.000Z",
      computedAt: "2026-05-04T10:00:00.000Z",
      total: 1,
      offset: 0,
      limit: 50,
      summary: { good: 0, fair: 0, poor: 1, unknown: 0, devices: 1 },
      devices: [{ device: "atm-1", kind: "atm", score: 41, status: "poor" }],
    },
  });
const deviceHealth = z
  .object({
    ...window,
    device: z.string(),
    kind: z.string().nullable(),
    subjects: z.array(z.string()),
    score: z.number().nullable(),
    status: z.string(),
    components: z.unknown(),
  })
  .loose()
  .meta({
    example: {
      window: "7d",
      device: "atm-1",
      kind: "atm",
      subjects: [],
      score: 41,
      status: "poor",
      components: { reliability: { score: 30, why: "3 errors in 7d" } },
    },
  });
const timeline = z
  .object({
    device: z.string(),
    from: z.string(),
    to: z.string(),
    subjects: z.array(z.string()),
    telemetry: z.unknown(),
    entries: z.array(z.object({ key: z.string(), at: z.string() }).loose()),
    next: z.string().nullable(),
    after: z.number(),
  })
  .meta({
    example: {
      device: "atm-1",
      from: "2026-05-03T10:00:00.000Z",
      to: "2026-05-04T10:00:00.000Z",
      subjects: [],
      telemetry: null,
      entries: [{ key: "event:1714816800000000", at: "2026-05-04T10:00:00.000Z", type: "event" }],
      next: null,
      after: 1714816800000000,
    },
  });
const noDevice: Answer = { description: "no such device", schema: errorBody };

/** Experience health and timelines: the support role's read-only views. */
export const fleetRoutes =
  (deps: { health: Health; auth: Authenticator }): FastifyPluginAsync =>
  (app) => {
    const windowOf = (ms: number | undefined) => ms ?? deps.health.config.window;
    const route = <P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(
      def: Omit<RouteDef<P, Q, B>, "tag" | "auth">,
    ) => defineRoute(app, deps.auth, { tag: "fleet", auth: ["support"], ...def });

    route({
      method: "GET",
      url: "/api/fleet/health",
      summary: "Every device's experience health, worst first",
      description:
        "Sorted, filtered (q searches device, kind and customer ids) and paginated. The formulas are in docs/health.md.",
      query: fleetQuery,
      responses: { 200: { description: "a page of fleet rows", schema: fleetPage } },
      async handler(request) {
        const { window, revoked, ...rest } = request.query;
        const windowMs = windowOf(window);
        return {
          window: formatDuration(windowMs),
          ...(await deps.health.fleet({ ...rest, windowMs, revoked: revoked ?? false })),
        };
      },
    });

    route({
      method: "GET",
      url: "/api/devices/:id/health",
      summary: "A device's health score and its five components",
      description:
        "Reliability, performance, sentiment, participation and connectivity, each with its inputs and a sentence that explains it.",
      params: idParams,
      query: deviceQuery,
      responses: { 200: { description: "the device's health", schema: deviceHealth }, 404: noDevice },
      async handler(request) {
        const windowMs = windowOf(request.query.window);
        const health = await deps.health.device(request.params.id, windowMs);
        if (!health) throw new RegistryError("NOT_FOUND", `no device '${request.params.id}'`);
        return { window: formatDuration(windowMs), ...health };
      },
    });

    route({
      method: "GET",
      url: "/api/devices/:id/timeline",
      summary: "A device's timeline",
      description:
        "Telemetry summaries, events, feedback with sentiment, actions with their lifecycle and why, presence, consent changes and refused messages; time-bounded, with cursor pages.",
      params: idParams,
      query: timelineQuery,
      responses: { 200: { description: "a page of the timeline", schema: timeline }, 404: noDevice },
      async handler(request) {
        const q = request.query;
        if (q.last !== undefined && q.from !== undefined)
          throw new RequestError("INVALID_QUERY", "from and last: give one of them");
        const to = q.to ?? Date.now();
        const from = q.from ?? to - (q.last ?? 86_400_000);
        if (from >= to) throw new RequestError("INVALID_QUERY", "from must be before to");
        if (to - from > MAX_WINDOW_MS)
          throw new RequestError("INVALID_QUERY", `from-to spans at most ${formatDuration(MAX_WINDOW_MS)}`);
        const found = await deps.health.timeline(request.params.id, {
          from,
          to,
          cursor: q.cursor,
          limit: q.limit,
          types: q.types ?? new Set(timelineTypes),
          interval: q.interval,
        });
        if (!found) throw new RegistryError("NOT_FOUND", `no device '${request.params.id}'`);
        return found;
      },
    });
    return Promise.resolve();
  };
