/**
 * The id syntax of devices and subjects, apart from the registry's view so that the message contract
 * (ingest/messages.ts), and through it the device SDK's browser build, can use it without the server's
 * dependencies.
 */
export const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const SUBJECT_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
