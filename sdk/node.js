// `import "refeed/device"` in plain Node lands here. The SDK is TypeScript run through tsx, like the
// rest of Refeed (bin/refeed.js), so there is no build output to fall out of date: register tsx's
// loader, then load the sources. Bundlers take the `browser` condition (sdk/browser.ts) and compile
// the TypeScript themselves; TypeScript users get the types from the `types` condition.
import { register } from "tsx/esm/api";

register();
const sdk = await import("./index.ts");

export const { connect, createDevice, DeviceError, memoryStore, fileQueueStore, fileSeenStore } = sdk;
