// The simulator's devices are SDK devices; the backoff is the SDK's.
export { Backoff } from "../sdk/backoff.ts";
