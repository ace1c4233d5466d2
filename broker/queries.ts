import {
  ident,
  influxql,
  join,
  whereDevicePage,
  whereWindow,
  type DevicePage,
  type InfluxQL,
  type Window,
} from "../store/influxql.ts";

/**
 * The presence measurement (connects and disconnects) and the queries other
 * parts need of it: a reader imports a query, never the measurement name.
 */
export const PRESENCE = "presence";
const presence = ident(PRESENCE);

/** Each device's last and first presence rows (columns `last`/`first`, tag `device`): presence rebuilds from them. */
export const lastPresence = (): InfluxQL => influxql`SELECT last("client") FROM ${presence} GROUP BY "device"`;
export const firstPresence = (): InfluxQL => influxql`SELECT first("client") FROM ${presence} GROUP BY "device"`;

/** A timeline page of the device's presence: `client`, `transport`, `topic`, `event`, `reason`. */
export const presencePage = (page: DevicePage): InfluxQL =>
  influxql`SELECT "client", "transport", "topic", "event", "reason" FROM ${presence} ${whereDevicePage(page)}`;

/** Per device over a window: the online time of its sessions (column `sum`). */
export const onlineMsSum = (window: Window): InfluxQL =>
  influxql`SELECT sum("online_ms") FROM ${presence} ${whereWindow(window)} GROUP BY "device"`;

/** Per device over a window: its first presence row (column `first`, with its time). */
export const firstOnlineMs = (window: Window): InfluxQL =>
  influxql`SELECT first("online_ms") FROM ${presence} ${whereWindow(window)} GROUP BY "device"`;

/** Per device over a window: disconnects for any reason but the given ones (column `count`). */
export const unexpectedDisconnects = (window: Window, expected: readonly string[]): InfluxQL => {
  const notExpected = join(
    expected.map((r) => influxql`"reason" != ${r}`),
    " AND ",
  );
  return influxql`SELECT count("client") FROM ${presence} ${whereWindow(window, influxql`"event" = 'disconnect' AND ${notExpected}`)} GROUP BY "device"`;
};
