import { describe, expect, it } from "vitest";
import { findCycles, leafImports, partGraph, report, shortestCycles } from "../../scripts/check-cycles.ts";

describe("check-cycles", () => {
  it("finds a two-file cycle and a longer one, and nothing in an acyclic graph", () => {
    const graph = {
      "a.ts": ["b.ts"],
      "b.ts": ["a.ts", "c.ts"],
      "c.ts": ["d.ts"],
      "d.ts": ["e.ts"],
      "e.ts": ["c.ts"],
      "f.ts": ["a.ts"],
    };
    expect(findCycles(graph)).toEqual([
      ["a.ts", "b.ts"],
      ["c.ts", "d.ts", "e.ts"],
    ]);
    expect(findCycles({ "a.ts": ["b.ts"], "b.ts": ["c.ts"], "c.ts": [] })).toEqual([]);
  });

  it("reports a file that imports itself", () => {
    expect(findCycles({ "a.ts": ["a.ts"], "b.ts": ["a.ts"] })).toEqual([["a.ts"]]);
  });

  it("collapses files to parts and finds a cycle between parts that no file cycle shows", () => {
    const files = {
      "api/index.ts": ["keys/index.ts", "api/auth.ts"],
      "api/auth.ts": [],
      "keys/index.ts": ["api/auth.ts"],
      "store/index.ts": [],
    };
    expect(findCycles(files)).toEqual([]);
    expect(partGraph(files)).toEqual({ api: ["keys"], keys: ["api"], store: [] });
    const result = report(files);
    expect(result.partCycles).toEqual([["api", "keys"]]);
    expect(result.lines).toEqual([
      "part cycle: api, keys",
      "  api -> keys -> api  (api/index.ts -> keys/index.ts; keys/index.ts -> api/auth.ts)",
    ]);
  });

  it("finds a part cycle through a third part", () => {
    const files = {
      "api/index.ts": ["subjects/index.ts"],
      "subjects/index.ts": ["auth/index.ts"],
      "auth/index.ts": ["api/errors.ts"],
      "api/errors.ts": [],
    };
    expect(report(files).partCycles).toEqual([["api", "auth", "subjects"]]);
    expect(shortestCycles(partGraph(files), ["api", "auth", "subjects"])).toEqual([["api", "subjects", "auth"]]);
  });

  it("lets test/ and bench/ import anything but refuses imports of them", () => {
    const files = {
      "test/a.test.ts": ["api/index.ts", "test/support/x.ts"],
      "bench/index.ts": ["store/index.ts"],
      "api/index.ts": [],
      "store/index.ts": ["test/support/x.ts"],
      "test/support/x.ts": [],
    };
    expect(leafImports(files)).toEqual([["store/index.ts", "test/support/x.ts"]]);
    expect(report(files).lines).toEqual(["import of a test/bench file: store/index.ts -> test/support/x.ts"]);
    expect(report({ "test/a.test.ts": ["api/index.ts"], "api/index.ts": [] }).lines).toEqual([]);
  });
});
