import type { FastifyPluginAsync, FastifyReply } from "fastify";
import { z } from "zod";
import { formatDuration, parseDuration } from "../../config/duration.ts";
import { fleetSorts, HealthError, timelineTypes, type Health, type TimelineType } from "../../health/index.ts";
import { requireRole, type Authenticator } from "../../auth/index.ts";
import { zodMessage } from "../errors.ts";
import { doc } from "../openapi.ts";

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

const badQuery = (reply: FastifyReply, error: z.ZodError) =>
  reply.code(400).send({ error: "invalid_query", message: zodMessage(error) });
const noDevice = (reply: FastifyReply, id: string) =>
  reply.code(404).send({ error: "not_found", message: `no device '${id}'` });

/** Experience health and timelines: the support role's read-only views. */
export const fleetRoutes =
  (deps: { health: Health; auth: Authenticator }): FastifyPluginAsync =>
  async (app) => {
    app.addHook("onRequest", requireRole(deps.auth, "support"));
    const windowOf = (ms: number | undefined) => ms ?? deps.health.config.window;

    app.get(
      "/api/fleet/health",
      doc({
        tag: "fleet",
        summary: "Every device's experience health, worst first",
        description:
          "Sorted, filtered (q searches device, kind and customer ids) and paginated. The formulas are in docs/health.md.",
        auth: ["support"],
        query: fleetQuery,
        responses: { 200: "a page of fleet rows", 400: "invalid query, naming the parameter" },
      }),
      async (request, reply) => {
        const parsed = fleetQuery.safeParse(request.query);
        if (!parsed.success) return badQuery(reply, parsed.error);
        const { window, revoked, ...rest } = parsed.data;
        const windowMs = windowOf(window);
        return {
          window: formatDuration(windowMs),
          ...(await deps.health.fleet({ ...rest, windowMs, revoked: revoked ?? false })),
        };
      },
    );

    app.get<{ Params: { id: string } }>(
      "/api/devices/:id/health",
      doc({
        tag: "fleet",
        summary: "A device's health score and its five components",
        description:
          "Reliability, performance, sentiment, participation and connectivity, each with its inputs and a sentence that explains it.",
        auth: ["support"],
        query: deviceQuery,
        responses: { 200: "OK", 400: "invalid query", 404: "no such device" },
      }),
      async (request, reply) => {
        const parsed = deviceQuery.safeParse(request.query);
        if (!parsed.success) return badQuery(reply, parsed.error);
        const windowMs = windowOf(parsed.data.window);
        const health = await deps.health.device(request.params.id, windowMs);
        if (!health) return noDevice(reply, request.params.id);
        return { window: formatDuration(windowMs), ...health };
      },
    );

    app.get<{ Params: { id: string } }>(
      "/api/devices/:id/timeline",
      doc({
        tag: "fleet",
        summary: "A device's timeline",
        description:
          "Telemetry summaries, events, feedback with sentiment, actions with their lifecycle and why, presence, consent changes and refused messages; time-bounded, with cursor pages.",
        auth: ["support"],
        query: timelineQuery,
        responses: { 200: "OK", 400: "invalid query", 404: "no such device" },
      }),
      async (request, reply) => {
        const parsed = timelineQuery.safeParse(request.query);
        if (!parsed.success) return badQuery(reply, parsed.error);
        const q = parsed.data;
        if (q.last !== undefined && q.from !== undefined)
          return reply.code(400).send({ error: "invalid_query", message: "from and last: give one of them" });
        const to = q.to ?? Date.now();
        const from = q.from ?? to - (q.last ?? 86_400_000);
        if (from >= to) return reply.code(400).send({ error: "invalid_query", message: "from must be before to" });
        if (to - from > MAX_WINDOW_MS)
          return reply
            .code(400)
            .send({ error: "invalid_query", message: `from-to spans at most ${formatDuration(MAX_WINDOW_MS)}` });
        try {
          const timeline = await deps.health.timeline(request.params.id, {
            from,
            to,
            cursor: q.cursor,
            limit: q.limit,
            types: q.types ?? new Set(timelineTypes),
            interval: q.interval,
          });
          if (!timeline) return noDevice(reply, request.params.id);
          return timeline;
        } catch (err) {
          if (err instanceof HealthError)
            return reply
              .code(400)
              .send({ error: err.code === "BAD_CURSOR" ? "invalid_cursor" : "invalid_query", message: err.message });
          throw err;
        }
      },
    );
  };
