import { z } from "zod";
import type { ActionRecord } from "./book.ts";

/**
 * What the platform sends devices, as schemas: the device SDK parses actions and retained state with
 * these, and the platform builds its payloads as their types, so the two sides cannot drift apart.
 * Plain objects (not strict): a field added later must not make older devices refuse an action.
 */
export const actionWireSchema = z.object({
  id: z.string().min(1),
  rule: z.string(),
  kind: z.enum(["set", "suggest", "clear", "notify"]),
  key: z.string(),
  value: z.unknown().optional(),
  prompt: z.string().optional(),
  why: z.string(),
});
export type ActionWire = z.infer<typeof actionWireSchema>;

/** The retained `devices/{id}/state`: the device's own keys and those of the subject it serves now. */
export const stateWireSchema = z.object({
  device: z.string(),
  subject: z.string().nullable(),
  profile: z.record(z.string(), z.unknown()),
  ts: z.number(),
});
export type StateWire = z.infer<typeof stateWireSchema>;

/** The payload of an action on devices/{id}/actions. */
export function wire(record: ActionRecord): string {
  const payload: ActionWire = {
    id: record.id,
    rule: record.rule,
    kind: record.kind,
    key: record.key,
    ...(record.value !== undefined ? { value: record.value } : {}),
    ...(record.prompt !== undefined ? { prompt: record.prompt } : {}),
    why: record.why,
  };
  return JSON.stringify(payload);
}
