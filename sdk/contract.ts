import type { z } from "zod";
import { actionWireSchema, stateWireSchema, type ActionWire, type StateWire } from "../actions/wire.ts";
import { messageOf, reasonOf, recordSchemas, type Channel } from "../ingest/messages.ts";
import { DeviceError } from "./errors.ts";

/** A time as the contract takes it: epoch milliseconds or ISO-8601 with an offset. */
export type Timestamp = number | string;
export type FieldValue = number | boolean | string;

export interface TelemetryRecord {
  metrics: Record<string, FieldValue>;
  ts?: Timestamp;
  subject?: string;
}
export interface EventRecord {
  name: string;
  props?: Record<string, FieldValue | null>;
  ts?: Timestamp;
  subject?: string;
}
export interface FeedbackRecord {
  /** A whole number from 1 to 5. */
  rating?: number;
  text?: string;
  ts?: Timestamp;
  subject?: string;
}
export type AckStatus = "applied" | "accepted" | "declined" | "failed" | "undone";
export type Action = ActionWire;
export type State = StateWire;
export type { Channel };

export interface RecordOf {
  telemetry: TelemetryRecord;
  events: EventRecord;
  feedback: FeedbackRecord;
}
export type DataChannel = keyof RecordOf;

/**
 * The records a device sends, checked with the very schemas the platform's ingest parses with, so a
 * record this accepts is one the platform stores (and one it refuses is refused here, with the same
 * reason, before it costs a publish and a dead letter).
 */
export function contractChecker(limits: { maxFields: number }) {
  const schemas = recordSchemas(limits);
  return function check(channel: Channel, record: unknown): void {
    const result = (schemas[channel] as z.ZodType).safeParse(record);
    if (result.success) return;
    const issue = result.error.issues[0]!;
    const field = issue.path.map(String).join(".");
    throw new DeviceError("INVALID_RECORD", `${channel}: ${field ? `${field}: ` : ""}${messageOf(issue)}`, {
      reason: reasonOf(issue),
    });
  };
}

/** An action as the platform sends it, or an INVALID_ACTION error. */
export function parseAction(payload: string): Action {
  let json: unknown;
  try {
    json = JSON.parse(payload);
  } catch {
    throw new DeviceError("INVALID_ACTION", `unreadable action (not JSON): ${payload.slice(0, 200)}`);
  }
  const result = actionWireSchema.safeParse(json);
  if (!result.success) throw new DeviceError("INVALID_ACTION", `unreadable action: ${result.error.issues[0]!.message}`);
  return result.data;
}

/** The retained state, or undefined for the empty payload that clears a retained message. */
export function parseState(payload: string): State | undefined {
  if (payload === "") return undefined;
  let json: unknown;
  try {
    json = JSON.parse(payload);
  } catch {
    throw new DeviceError("INVALID_ACTION", `unreadable state (not JSON): ${payload.slice(0, 200)}`);
  }
  const result = stateWireSchema.safeParse(json);
  if (!result.success) throw new DeviceError("INVALID_ACTION", `unreadable state: ${result.error.issues[0]!.message}`);
  return result.data;
}
