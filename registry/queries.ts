import { ident, influxql, regex, type InfluxQL } from "../store/influxql.ts";

/**
 * The device registry's measurement and the queries other parts need of it:
 * a reader imports a query, never the measurement name.
 */
export const DEVICE_REGISTRY = "device_registry";
const registry = ident(DEVICE_REGISTRY);

/** Every registry row, oldest first: the registry rebuilds from them. */
export const registryRows = (): InfluxQL => influxql`SELECT * FROM ${registry}`;

/**
 * Devices provisioned with a subject (`device`, `subject`, the time): links
 * made before links had a measurement of their own.
 */
export const provisionedLinks = (): InfluxQL =>
  influxql`SELECT device, subject FROM ${registry} WHERE subject =~ ${regex(".")}`;
