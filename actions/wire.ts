import type { ActionRecord } from "./book.ts";

/** The payload of an action on devices/{id}/actions. */
export function wire(record: ActionRecord): string {
  return JSON.stringify({
    id: record.id,
    rule: record.rule,
    kind: record.kind,
    key: record.key,
    ...(record.value !== undefined ? { value: record.value } : {}),
    ...(record.prompt !== undefined ? { prompt: record.prompt } : {}),
    why: record.why,
  });
}
