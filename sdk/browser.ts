/**
 * The Refeed device SDK in a browser: the same API as index.ts over MQTT on WebSocket (`ws://host/mqtt`)
 * or server-sent events and HTTP, with localStorage instead of files for the stores.
 */
export { connect, createDevice, type Device } from "./device.ts";
export type { ActionHandler, DeviceEvents, PublishOptions } from "./base.ts";
export type { AckStatus, Action, EventRecord, FeedbackRecord, State, TelemetryRecord } from "./contract.ts";
export { DeviceError, type DeviceErrorCode } from "./errors.ts";
export type { DeviceOptions } from "./options.ts";
export { localStorageStore, memoryStore } from "./stores.ts";
