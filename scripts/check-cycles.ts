// Fails on an import cycle between files, or between parts (top-level folders), and on any import of test/ or
// bench/ from outside them. Type imports count: a cycle through types still couples the parts' releases.
import { pathToFileURL } from "node:url";
import madge from "madge";

export type Graph = Record<string, readonly string[]>;

/** Folders that may import anything but that nothing else may import. */
const LEAF_PARTS = new Set(["test", "bench"]);

/**
 * Strongly connected components of more than one node, plus nodes that import themselves: each is a cycle.
 * Components and their members are sorted so the report is stable from run to run.
 */
export function findCycles(graph: Graph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  let next = 0;

  const nodes = new Set<string>(Object.keys(graph));
  for (const targets of Object.values(graph)) for (const t of targets) nodes.add(t);

  // Tarjan's algorithm; the tree's import graph is a few hundred files deep at most, so recursion is safe.
  const visit = (node: string): void => {
    index.set(node, next);
    low.set(node, next);
    next += 1;
    stack.push(node);
    onStack.add(node);
    for (const target of graph[node] ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(node, Math.min(low.get(node)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(node, Math.min(low.get(node)!, index.get(target)!));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string | undefined;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1 || (graph[node] ?? []).includes(node)) cycles.push(component.sort());
  };

  for (const node of [...nodes].sort()) if (!index.has(node)) visit(node);
  return cycles.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/** The part a file belongs to: its top-level folder, or the file itself when it sits at the root. */
export function partOf(file: string): string {
  const slash = file.indexOf("/");
  return slash === -1 ? file : file.slice(0, slash);
}

/** Collapses a file graph to its parts; imports within a part are not edges between parts. */
export function partGraph(files: Graph): Graph {
  const parts: Record<string, Set<string>> = {};
  for (const [file, imports] of Object.entries(files)) {
    const from = partOf(file);
    const targets = (parts[from] ??= new Set());
    for (const imported of imports) {
      const to = partOf(imported);
      if (to !== from) targets.add(to);
    }
  }
  return Object.fromEntries(Object.entries(parts).map(([part, targets]) => [part, [...targets].sort()]));
}

/** Imports of test/ or bench/ from any other part. */
export function leafImports(files: Graph): [string, string][] {
  const found: [string, string][] = [];
  for (const [file, imports] of Object.entries(files)) {
    if (LEAF_PARTS.has(partOf(file))) continue;
    for (const imported of imports) if (LEAF_PARTS.has(partOf(imported))) found.push([file, imported]);
  }
  return found.sort((a, b) => a[0].localeCompare(b[0]) || a[1].localeCompare(b[1]));
}

/**
 * Within one component, the shortest cycle through each of its edges, each once: a component of eight parts reads
 * as the handful of loops ("api -> keys -> api") that someone has to cut.
 */
export function shortestCycles(graph: Graph, component: readonly string[]): string[][] {
  const members = new Set(component);
  const inside = (node: string): string[] => (graph[node] ?? []).filter((t) => members.has(t));
  const pathBetween = (from: string, to: string): string[] | undefined => {
    const previous = new Map<string, string>([[from, from]]);
    const queue = [from];
    for (let head = 0; head < queue.length; head += 1) {
      const node = queue[head]!;
      if (node === to) break;
      for (const t of inside(node)) {
        if (previous.has(t)) continue;
        previous.set(t, node);
        queue.push(t);
      }
    }
    if (!previous.has(to)) return undefined;
    const path = [to];
    while (path[0] !== from) path.unshift(previous.get(path[0]!)!);
    return path;
  };
  const found = new Map<string, string[]>();
  for (const from of [...component].sort()) {
    for (const to of inside(from)) {
      const back = pathBetween(to, from);
      if (!back) continue;
      const loop = [from, ...back.slice(0, -1)];
      // Rotate so the smallest name leads: the same loop found from another edge then has the same key.
      const first = loop.indexOf([...loop].sort()[0]!);
      const rotated = [...loop.slice(first), ...loop.slice(0, first)];
      found.set(rotated.join(" -> "), rotated);
    }
  }
  return [...found.values()].sort((a, b) => a.length - b.length || a.join().localeCompare(b.join()));
}

/** One file-level import that carries a part-level edge, so the report says where to cut. */
function witness(files: Graph, from: string, to: string): string {
  for (const [file, imports] of Object.entries(files).sort(([a], [b]) => a.localeCompare(b))) {
    if (partOf(file) !== from) continue;
    const imported = imports.find((i) => partOf(i) === to);
    if (imported) return `${file} -> ${imported}`;
  }
  return `${from} -> ${to}`;
}

export interface CycleReport {
  fileCycles: string[][];
  partCycles: string[][];
  leafImports: [string, string][];
  lines: string[];
}

export function report(files: Graph): CycleReport {
  const fileCycles = findCycles(files);
  const parts = partGraph(files);
  const partCycles = findCycles(parts);
  const leaves = leafImports(files);
  const lines: string[] = [];
  for (const cycle of fileCycles) lines.push(`file cycle: ${cycle.join(" <-> ")}`);
  for (const cycle of partCycles) {
    lines.push(`part cycle: ${cycle.join(", ")}`);
    for (const loop of shortestCycles(parts, cycle)) {
      const via = loop.map((part, i) => witness(files, part, loop[(i + 1) % loop.length]!));
      lines.push(`  ${[...loop, loop[0]].join(" -> ")}  (${via.join("; ")})`);
    }
  }
  for (const [from, to] of leaves) lines.push(`import of a test/bench file: ${from} -> ${to}`);
  return { fileCycles, partCycles, leafImports: leaves, lines };
}

async function main(): Promise<void> {
  const result = await madge(".", {
    baseDir: process.cwd(),
    fileExtensions: ["ts"],
    tsConfig: "tsconfig.json",
    excludeRegExp: [/^node_modules\//, /^dashboard\/public\//, /^data\//, /^coverage\//, /\.d\.ts$/],
    detectiveOptions: { ts: { skipTypeImports: false }, tsx: { skipTypeImports: false } },
  });
  const { lines } = report(result.obj());
  if (lines.length === 0) {
    process.stdout.write("no import cycles\n");
    return;
  }
  process.stdout.write(lines.join("\n") + "\n");
  process.exitCode = 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
