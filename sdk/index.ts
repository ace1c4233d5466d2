/**
 * The Refeed device SDK for Node (`refeed/device`): what a device or app needs to speak the platform's
 * contract (README, "MQTT contract (v1)"; docs/devices.md). Browsers get the same API from browser.ts,
 * without the file stores.
 */
export { connect, createDevice, type Device } from "./device.ts";
export type { ActionHandler, DeviceEvents, PublishOptions } from "./base.ts";
export type {
  AckStatus,
  Action,
  EventRecord,
  FeedbackRecord,
  FieldValue,
  State,
  TelemetryRecord,
  Timestamp,
} from "./contract.ts";
export { DeviceError, type DeviceErrorCode } from "./errors.ts";
export type { DeviceOptions } from "./options.ts";
export type { QueuedRecord, QueueStore } from "./outbox.ts";
export type { SeenStore } from "./seen.ts";
export { memoryStore } from "./stores.ts";
export { fileQueueStore, fileSeenStore } from "./file-stores.ts";
