import { readFile } from "node:fs/promises";
import semver from "semver";
import { describe, expect, it } from "vitest";

interface Locked {
  version?: string;
  engines?: { node?: string } | string[];
  dev?: boolean;
  optional?: boolean;
}

// npm only warns (EBADENGINE) when a locked package asks for a newer Node than the one installing it, and such
// a package may use syntax or APIs this Node lacks; the project promises Node 20, so the lock must fit it.
describe("package-lock.json", () => {
  it("holds no package whose engines.node excludes the Node running the tests", async () => {
    const lock = JSON.parse(await readFile(new URL("../../package-lock.json", import.meta.url), "utf8")) as {
      packages: Record<string, Locked>;
    };
    const misfits = Object.entries(lock.packages)
      .filter(([path, p]) => path !== "" && !p.optional)
      .flatMap(([path, p]) => {
        const range = Array.isArray(p.engines) ? undefined : p.engines?.node;
        return range && !semver.satisfies(process.versions.node, range, { includePrerelease: true })
          ? [`${path.replace(/^.*node_modules\//, "")}@${p.version ?? "?"} wants node ${range}`]
          : [];
      });
    expect(misfits).toEqual([]);
  });
});
