import type { FastifyPluginAsync, FastifyReply } from "fastify";
import { z } from "zod";
import { parseDuration } from "../../config/duration.ts";
import { CatalogError, RuleError, type CatalogEntry, type Rules } from "../../rules/index.ts";
import { ruleSchema } from "../../rules/schema.ts";
import { requireRole, type Authenticator } from "../../auth/index.ts";
import { zodMessage } from "../errors.ts";
import { doc } from "../openapi.ts";

const YAML_TYPES = ["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"];

const backtestBody = z.strictObject({
  since: z
    .string()
    .refine((s) => parseDuration(s) !== undefined, "a duration such as 7d or 30d")
    .default("30d"),
  rule: z.string().min(1).optional(),
});

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
  };
}

function fail(reply: FastifyReply, err: unknown) {
  if (err instanceof RuleError)
    return reply
      .code(400)
      .send({ error: "invalid_rule", message: err.message, line: err.line ?? null, field: err.field || null });
  if (err instanceof CatalogError)
    return reply
      .code(err.code === "RULE_NOT_FOUND" ? 404 : 409)
      .send({ error: err.code.toLowerCase(), message: err.message });
  throw err;
}

/** Rules as code through HTTP: the product role's part of the API. */
export const ruleRoutes =
  (deps: { rules: Rules; auth: Authenticator }): FastifyPluginAsync =>
  async (app) => {
    app.addHook("onRequest", requireRole(deps.auth, "product"));
    // Rule files are YAML; a JSON object is accepted too.
    app.addContentTypeParser(YAML_TYPES, { parseAs: "string" }, (_request, body, done) => done(null, body));
    const textOf = (body: unknown) => (typeof body === "string" ? body : JSON.stringify(body ?? {}, null, 2));

    app.get("/api/rules", doc({ tag: "rules", summary: "List rules", auth: ["product"] }), async () =>
      deps.rules.list().map(summary),
    );

    app.post(
      "/api/rules",
      doc({
        tag: "rules",
        summary: "Create or update a rule (YAML or JSON)",
        description:
          "The rule format of docs/rules.md. A broken rule is refused with its line and field; the previous version keeps running.",
        auth: ["product"],
        body: ruleSchema,
        bodyTypes: YAML_TYPES,
        responses: {
          201: "the rule's new version",
          400: "`{error: invalid_rule, message, line, field}`",
          409: "the rule comes from a file in REFEED_RULES_DIR",
        },
      }),
      async (request, reply) => {
        try {
          const entry = await deps.rules.put(textOf(request.body), request.principal?.name ?? "unknown");
          return reply.code(201).send(summary(entry));
        } catch (err) {
          return fail(reply, err);
        }
      },
    );

    app.get<{ Params: { id: string } }>(
      "/api/rules/:id",
      doc({
        tag: "rules",
        summary: "A rule with its text",
        auth: ["product"],
        responses: { 200: "OK", 404: "no such rule" },
      }),
      async (request, reply) => {
        const entry = deps.rules.get(request.params.id);
        if (!entry) return reply.code(404).send({ error: "rule_not_found", message: `no rule '${request.params.id}'` });
        return { ...summary(entry), text: entry.rule.text };
      },
    );

    app.get<{ Params: { id: string } }>(
      "/api/rules/:id/versions",
      doc({
        tag: "rules",
        summary: "A rule's versions, with who and when",
        auth: ["product"],
        responses: { 200: "OK", 404: "no such rule" },
      }),
      async (request, reply) => {
        const versions = deps.rules.versions(request.params.id);
        if (versions.length === 0)
          return reply.code(404).send({ error: "rule_not_found", message: `no rule '${request.params.id}'` });
        return versions;
      },
    );

    for (const [verb, enabled] of [
      ["enable", true],
      ["disable", false],
    ] as const) {
      app.post<{ Params: { id: string } }>(
        `/api/rules/:id/${verb}`,
        doc({
          tag: "rules",
          summary: `${enabled ? "Enable" : "Disable"} a rule`,
          auth: ["product"],
          responses: { 200: "the rule", 404: "no such rule" },
        }),
        async (request, reply) => {
          try {
            return summary(
              await deps.rules.setEnabled(request.params.id, enabled, request.principal?.name ?? "unknown"),
            );
          } catch (err) {
            return fail(reply, err);
          }
        },
      );
    }

    app.delete<{ Params: { id: string } }>(
      "/api/rules/:id",
      doc({
        tag: "rules",
        summary: "Delete a rule made through the API",
        auth: ["product"],
        responses: { 204: "deleted", 404: "no such rule", 409: "the rule comes from a file" },
      }),
      async (request, reply) => {
        try {
          await deps.rules.remove(request.params.id, request.principal?.name ?? "unknown");
          return reply.code(204).send();
        } catch (err) {
          return fail(reply, err);
        }
      },
    );

    // Body: {"since": "30d", "rule": "<yaml>"} to try a new or changed rule, or nothing for the stored one.
    app.post<{ Params: { id: string } }>(
      "/api/rules/:id/backtest",
      doc({
        tag: "rules",
        summary: "Replay stored history through a rule; nothing is sent",
        description:
          "The stored rule, or a new or changed one given as `rule` (YAML text). Answers how often and for whom it would have fired, with sample whys.",
        auth: ["product"],
        body: backtestBody,
        bodyTypes: YAML_TYPES,
        responses: { 200: "the backtest report", 400: "invalid body or rule", 404: "no such rule" },
      }),
      async (request, reply) => {
        const parsed = backtestBody.safeParse(
          typeof request.body === "string" ? { rule: request.body } : (request.body ?? {}),
        );
        if (!parsed.success) return reply.code(400).send({ error: "invalid_body", message: zodMessage(parsed.error) });
        try {
          return await deps.rules.backtest(request.params.id, {
            sinceMs: parseDuration(parsed.data.since)!,
            ...(parsed.data.rule ? { text: parsed.data.rule } : {}),
          });
        } catch (err) {
          return fail(reply, err);
        }
      },
    );
  };
