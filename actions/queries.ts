import {
  ident,
  influxql,
  micros,
  whereDevicePage,
  whereWindow,
  type DevicePage,
  type InfluxQL,
  type Window,
} from "../store/influxql.ts";

/**
 * The action log's measurement and the queries other parts need of it: a
 * reader imports a query, never the measurement name.
 */
export const ACTION_LOG = "action_log";
const log = ident(ACTION_LOG);

/** Whether a measurement is the action log: erasure reads it whole, since lifecycle rows name only the action id. */
export const isActionLog = (measurement: string): boolean => measurement === ACTION_LOG;

/** Every row of the action log, oldest first: for a stream that ties lifecycle rows to their `proposed` row. */
export const allActionRows = (): InfluxQL => influxql`SELECT * FROM ${log}`;

/** The `action`, `status` and `device` of every row: what delivery replays at start. */
export const actionStatuses = (): InfluxQL => influxql`SELECT "action", "status", "device" FROM ${log}`;

/** A timeline page of the device's proposed actions: column `action`. */
export const proposedPage = (page: DevicePage): InfluxQL =>
  influxql`SELECT "action" FROM ${log} ${whereDevicePage(page, influxql`"status" = 'proposed'`)}`;

/** The actions of a device with a lifecycle row at or after a time: column `action`. */
export const actionsMovedSince = (device: string, afterMicros: number): InfluxQL =>
  influxql`SELECT "action" FROM ${log} WHERE "device" = ${device} AND time >= ${micros(afterMicros)}`;

/** Per device over a window: how many suggestions were asked (column `count`). */
export const suggestionsAsked = (window: Window): InfluxQL =>
  influxql`SELECT count("action") FROM ${log} ${whereWindow(window, influxql`"status" = 'proposed' AND "kind" = 'suggest'`)} GROUP BY "device"`;

/** Per device over a window: distinct actions answered so (column `count`); a redelivered answer counts once. */
export const answered = (window: Window, status: "accepted" | "declined"): InfluxQL =>
  influxql`SELECT count(distinct("action")) FROM ${log} ${whereWindow(window, influxql`"status" = ${status}`)} GROUP BY "device"`;

/** Every row of the action log from a time on, oldest first: a rule's report ties lifecycle rows to its proposals. */
export const actionRowsSince = (fromMs: number): InfluxQL =>
  influxql`SELECT "action", "status", "rule", "kind", "owner" FROM ${log} WHERE time >= ${micros(fromMs * 1000)}`;
