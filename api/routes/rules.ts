import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import type { Authenticator } from "../../auth/index.ts";
import { parseDuration } from "../../config/duration.ts";
import { CatalogError, type CatalogEntry, type Rules } from "../../rules/index.ts";
import { ruleSchema } from "../../rules/schema.ts";
import { errorBody, RequestError } from "../errors.ts";
import { defineRoute, type Answer, type RouteDef } from "../route.ts";
import { idParams, isoTime } from "../schemas.ts";

const YAML_TYPES = ["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"];

const backtestBody = z.strictObject({
  since: z
    .string()
    .refine((s) => parseDuration(s) !== undefined, "a duration such as 7d or 30d")
    .default("30d"),
  rule: z.string().min(1).optional(),
});
/** A YAML body is the rule to try, over the default period. */
const backtestYaml = z
  .string()
  .transform((rule): z.input<typeof backtestBody> => ({ rule }))
  .pipe(backtestBody);

function summary(entry: CatalogEntry) {
  const { spec } = entry.rule;
  return {
    id: spec.id,
    description: spec.description ?? null,
    on: spec.on,
    scope: spec.scope,
    origin: entry.origin,
    source: entry.rule.source,
    version: entry.version,
    enabled: entry.enabled,
    updatedAt: entry.updatedAt.toISOString(),
    updatedBy: entry.updatedBy,
    warnings: entry.rule.warnings.map((w) => ({ ...w, line: w.line ?? null })),
  };
}

const EXAMPLE = {
  id: "cool-theme",
  description: "A cooler theme when it is hot",
  on: "telemetry",
  scope: "device",
  origin: "api",
  source: "api:cool-theme",
  version: 2,
  enabled: true,
  updatedAt: "2026-05-04T10:00:00.000Z",
  updatedBy: "product-team",
  warnings: [
    {
      line: 5,
      field: "when",
      message:
        "msg.metrics.temp: whether a message has this metric is known only at run time (without it, it is an error): guard it with has(msg.metrics.temp) && ...",
    },
  ],
};
const ruleView = z
  .object({
    id: z.string(),
    description: z.string().nullable(),
    on: z.unknown(),
    scope: z.enum(["device", "subject"]),
    origin: z.string(),
    source: z.string(),
    version: z.number().int(),
    enabled: z.boolean(),
    updatedAt: isoTime,
    updatedBy: z.string(),
    /** What the type check could not rule out (the rule runs); refusals are 400s. */
    warnings: z.array(z.object({ line: z.number().int().nullable(), field: z.string(), message: z.string() })),
  })
  .meta({ example: EXAMPLE });
const ruleText = ruleView.extend({ text: z.string() }).meta({
  example: { ...EXAMPLE, text: "id: cool-theme\non: telemetry\nwhen: metrics.temp > 30\nthen: ..." },
});
const versions = z
  .array(
    z
      .object({
        version: z.number().int(),
        at: z.string(),
        by: z.string(),
        op: z.enum(["version", "enable", "disable", "delete"]),
        origin: z.string(),
        text: z.string().optional(),
      })
      .loose(),
  )
  .meta({
    example: [{ version: 1, at: "2026-05-04T10:00:00.000Z", by: "product-team", op: "version", origin: "api" }],
  });
const report = z
  .object({
    rule: z.string(),
    from: z.string(),
    to: z.string(),
    evaluated: z.number().int(),
    fired: z.number().int(),
    held: z.record(z.string(), z.number()),
    targets: z.array(z.object({ target: z.string(), fires: z.number().int(), lastWhy: z.string() })),
    samples: z.array(z.string()),
    /** Why evaluations failed at run time (held.error), by message. */
    errors: z.array(z.object({ message: z.string(), count: z.number().int(), lastTarget: z.string() })),
  })
  .meta({
    example: {
      rule: "cool-theme",
      from: "2026-04-04T10:00:00.000Z",
      to: "2026-05-04T10:00:00.000Z",
      evaluated: 1200,
      fired: 14,
      held: { cooldown: 3 },
      targets: [{ target: "device:tv-1", fires: 14, lastWhy: "temperature 31 > 30" }],
      samples: ["temperature 31 > 30"],
      errors: [{ message: "field not found: temp", count: 2, lastTarget: "device:tv-2" }],
    },
  });
const DAY = 86_400_000;
/** `since`: an ISO time or a duration back from now (24h, 7d); `bucket`: a duration. */
const reportQuery = z.strictObject({
  since: z
    .string()
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      const at = ms !== undefined ? Date.now() - ms : /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : NaN;
      if (Number.isFinite(at) && at <= Date.now() && at >= Date.now() - 400 * DAY) return at;
      ctx.addIssue({
        code: "custom",
        message: "an ISO-8601 time or a duration back from now such as 24h or 7d, at most 400d ago",
      });
      return z.NEVER;
    })
    .optional(),
  bucket: z
    .string()
    .refine((d) => (parseDuration(d) ?? 0) >= 60_000, "a duration of at least 1m such as 1h or 1d")
    .transform((d) => parseDuration(d)!)
    .optional(),
});
const funnel = z.object(
  Object.fromEntries(
    ["proposed", "delivered", "applied", "accepted", "declined", "undone", "expired", "failed", "unchanged"].map(
      (k) => [k, z.number().int()],
    ),
  ),
);
const ruleReportView = z
  .object({
    rule: z.string(),
    since: z.string(),
    until: z.string(),
    versions: z.array(
      z
        .object({
          version: z.number().int(),
          from: z.string(),
          to: z.string().optional(),
          funnel,
          rates: z.object({ acceptance: z.number().nullable(), undo: z.number().nullable() }),
          promptsPerActiveCustomer: z.number().nullable(),
          activeCustomers: z.number().int(),
          answers: z.number().int(),
          asks: z.number().int(),
          participation: z.number().nullable(),
        })
        .loose(),
    ),
    series: z.array(z.object({ at: z.string() }).loose()),
    held: z.record(z.string(), z.number()),
    experiment: z.object({}).loose().optional(),
  })
  .loose();
const noRule: Answer = { description: "no such rule", schema: errorBody };
const invalidRule = errorBody
  .extend({ line: z.number().int().nullable().optional(), field: z.string().nullable().optional() })
  .meta({ example: { error: "invalid_rule", message: "api:3: when: unknown field", line: 3, field: "when" } });

/** Rules as code through HTTP: the product role's part of the API. */
export const ruleRoutes =
  (deps: { rules: Rules; auth: Authenticator }): FastifyPluginAsync =>
  (app) => {
    // Rule files are YAML; a JSON object is accepted too.
    app.addContentTypeParser(YAML_TYPES, { parseAs: "string" }, (_request, body, done) => done(null, body));
    const textOf = (body: unknown) => {
      if (body === undefined || body === null || body === "")
        throw new RequestError("MISSING_BODY", "body: required (the rule, as YAML or as JSON)");
      return typeof body === "string" ? body : JSON.stringify(body, null, 2);
    };
    const route = <P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(
      def: Omit<RouteDef<P, Q, B>, "tag" | "auth">,
    ) => defineRoute(app, deps.auth, { tag: "rules", auth: ["product"], ...def });

    route({
      method: "GET",
      url: "/api/rules",
      summary: "List rules",
      responses: { 200: { description: "every rule", schema: z.array(ruleView) } },
      handler: () => deps.rules.list().map(summary),
    });

    route({
      method: "POST",
      url: "/api/rules",
      summary: "Create or update a rule (YAML or JSON)",
      description:
        "The rule format of docs/rules.md. A broken rule is refused with its line and field; the previous version keeps running.",
      body: ruleSchema,
      bodyTypes: Object.fromEntries(YAML_TYPES.map((t) => [t, z.string()])),
      bodyParsedByPart: true,
      responses: {
        201: { description: "the rule's new version", schema: ruleView },
        400: { description: "`{error: invalid_rule, message, line, field}`", schema: invalidRule },
        409: { description: "the rule comes from a file in REFEED_RULES_DIR", schema: errorBody },
      },
      async handler(request, reply) {
        const entry = await deps.rules.put(textOf(request.body), request.principal?.name ?? "unknown");
        return reply.code(201).send(summary(entry));
      },
    });

    route({
      method: "GET",
      url: "/api/rules/partitions",
      summary: "Where rule windows live: each partition's owner node and backlog",
      description:
        "In cluster mode the windows are split in partitions, each owned by one node under a lease; `pending` entries were read by the owner and wait for their actions to be stored, `lag` entries wait to be read. A single node has one partition and no owner.",
      responses: {
        503: { description: "Redis is unreachable: the owners are unknown now", schema: errorBody },
        200: {
          description: "every partition",
          schema: z.array(
            z.object({
              partition: z.number().int(),
              owner: z.string().nullable(),
              pending: z.number().int(),
              lag: z.number().int(),
            }),
          ),
        },
      },
      handler: () => deps.rules.partitions(),
    });

    route({
      method: "GET",
      url: "/api/rules/:id",
      summary: "A rule with its text",
      params: idParams,
      responses: { 200: { description: "the rule", schema: ruleText }, 404: noRule },
      handler(request) {
        const entry = deps.rules.get(request.params.id);
        if (!entry) throw new CatalogError("RULE_NOT_FOUND", `no rule '${request.params.id}'`);
        return { ...summary(entry), text: entry.rule.text };
      },
    });

    route({
      method: "GET",
      url: "/api/rules/:id/versions",
      summary: "A rule's versions, with who and when",
      params: idParams,
      responses: { 200: { description: "the versions", schema: versions }, 404: noRule },
      handler(request) {
        const found = deps.rules.versions(request.params.id);
        if (found.length === 0) throw new CatalogError("RULE_NOT_FOUND", `no rule '${request.params.id}'`);
        return found;
      },
    });

    for (const [verb, enabled] of [
      ["enable", true],
      ["disable", false],
    ] as const) {
      route({
        method: "POST",
        url: `/api/rules/:id/${verb}`,
        summary: `${enabled ? "Enable" : "Disable"} a rule`,
        params: idParams,
        responses: { 200: { description: "the rule", schema: ruleView }, 404: noRule },
        handler: async (request) =>
          summary(await deps.rules.setEnabled(request.params.id, enabled, request.principal?.name ?? "unknown")),
      });
    }

    route({
      method: "DELETE",
      url: "/api/rules/:id",
      summary: "Delete a rule made through the API",
      params: idParams,
      responses: {
        204: { description: "deleted" },
        404: noRule,
        409: { description: "the rule comes from a file", schema: errorBody },
      },
      async handler(request, reply) {
        await deps.rules.remove(request.params.id, request.principal?.name ?? "unknown");
        return reply.code(204).send();
      },
    });

    // Body: {"since": "30d", "rule": "<yaml>"} to try a new or changed rule, {} for the stored one, or the YAML alone.
    route({
      method: "POST",
      url: "/api/rules/:id/backtest",
      summary: "Replay stored history through a rule; nothing is sent",
      description:
        "The stored rule (body `{}`), or a new or changed one given as `rule` (YAML text) or as the YAML body itself. Answers how often and for whom it would have fired, with sample whys.",
      params: idParams,
      body: backtestBody,
      bodyTypes: Object.fromEntries(YAML_TYPES.map((t) => [t, backtestYaml])),
      responses: {
        200: { description: "the backtest report", schema: report },
        400: { description: "invalid body or rule", schema: invalidRule },
        404: noRule,
      },
      handler: (request, reply) => {
        // Two content types are accepted, so fastify checks no body when none is sent: the missing one is refused here.
        const body = request.body as typeof request.body | undefined;
        if (body === undefined)
          return reply
            .code(400)
            .send({ error: "invalid_body", message: "body: required; send {} to try the stored rule" });
        return deps.rules.backtest(request.params.id, {
          sinceMs: parseDuration(body.since)!,
          ...(body.rule ? { text: body.rule } : {}),
        });
      },
    });

    route({
      method: "GET",
      url: "/api/rules/:id/report",
      summary: "What a rule's actions achieved: funnel per version, rates, series, and its experiment's result",
      description:
        "Computed from the action log, the experiment assignments and the devices' records in InfluxDB. `since` is an ISO time or a duration back from now (default 7d); `bucket` the series' step (default: the span / 24, at least 1m). See docs/rules.md.",
      params: idParams,
      query: reportQuery,
      responses: {
        200: { description: "the report", schema: ruleReportView },
        400: { description: "invalid since or bucket", schema: errorBody },
        404: noRule,
      },
      async handler(request) {
        const until = Date.now();
        const since = request.query.since ?? until - 7 * DAY;
        const bucketMs = request.query.bucket ?? Math.max(60_000, Math.ceil((until - since) / 24));
        const report = await deps.rules.report(request.params.id, { since, until, bucketMs });
        if (!report) throw new CatalogError("RULE_NOT_FOUND", `no rule '${request.params.id}'`);
        return report;
      },
    });
    return Promise.resolve();
  };
