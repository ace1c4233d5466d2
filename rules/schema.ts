import { z } from "zod";
import { parseDuration } from "./duration.ts";

const key = z.string().regex(/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/, "a dotted key such as ui.theme (lowercase letters, digits, '_')");
const json: z.ZodType<unknown> = z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(z.lazy(() => json)), z.record(z.string(), z.lazy(() => json))]);
const expr = z.string().min(1, "an empty CEL expression");
const valueOrExpr = { value: json.optional(), expr: expr.optional() };
const onlyOne = (a: { value?: unknown; expr?: string }) => !(a.value !== undefined && a.expr !== undefined);
const oneMsg = { message: "give either value or expr, not both" };

const setAction = z.strictObject({ set: key, ...valueOrExpr }).refine(onlyOne, oneMsg)
  .refine((a) => a.value !== undefined || a.expr !== undefined, { message: "set needs a value or an expr" });
const suggestAction = z.strictObject({ suggest: key, ...valueOrExpr, prompt: z.string().min(1).max(200) }).refine(onlyOne, oneMsg)
  .refine((a) => a.value !== undefined || a.expr !== undefined, { message: "suggest needs a value or an expr" });
const clearAction = z.strictObject({ clear: key });

export const actionSchema = z.union([setAction, suggestAction, clearAction], {
  error: "each action is one of {set: key, value|expr}, {suggest: key, value|expr, prompt}, {clear: key}",
});

const trigger = z.string().regex(/^(telemetry|feedback|event:[A-Za-z_][A-Za-z0-9_.-]{0,63})$/, "one of telemetry, feedback, event:<name>");

export const ruleSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, "lowercase letters, digits and '-' (1-64)"),
  description: z.string().max(500).optional(),
  on: trigger,
  scope: z.enum(["device", "subject"]).default("device"),
  when: expr.default("true"),
  then: z.array(actionSchema).min(1, "a rule needs at least one action").max(16),
  cooldown: z
    .string()
    .refine((d) => parseDuration(d) !== undefined, "a duration such as 30s, 15m, 1h or 7d")
    .transform((d) => parseDuration(d)!)
    .optional(),
  enabled: z.boolean().default(true),
});

export type RuleSpec = z.infer<typeof ruleSchema>;
export type ActionSpec = z.infer<typeof actionSchema>;
