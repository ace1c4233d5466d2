import { build } from "esbuild";
import { ROOT } from "./process.ts";

/**
 * The device SDK as a browser gets it from a bundler: sdk/browser.ts (the package's `browser`
 * condition of `refeed/device`) with mqtt.js' browser build, as one script defining `RefeedDevice`.
 * esbuild is the one tsx runs on, so nothing is added to build it.
 */
export async function bundleDeviceSdk(): Promise<string> {
  const result = await build({
    // Through the package's own entry, as an app's bundler resolves it.
    stdin: { contents: 'export * from "refeed/device";', resolveDir: ROOT, loader: "ts" },
    bundle: true,
    platform: "browser",
    format: "iife",
    globalName: "RefeedDevice",
    target: "es2022",
    write: false,
    logLevel: "silent",
  });
  return result.outputFiles[0]!.text;
}
