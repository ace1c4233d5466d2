import { celEnv, isCelError, isCelList, isCelMap, parse, plan, type CelValue } from "@bufbuild/cel";

const env = celEnv();

export class CelCompileError extends Error {
  readonly code = "REFEED_RULE_CEL";
}

export type Evaluate = (
  bindings: Record<string, unknown>,
) => { ok: true; value: unknown } | { ok: false; error: string };

/** Parses and plans once; the returned function is what runs per message. */
export function compile(source: string): Evaluate {
  let program: ReturnType<typeof plan>;
  try {
    program = plan(env, parse(source));
  } catch (err) {
    throw new CelCompileError((err as Error).message);
  }
  return (bindings) => {
    const result = program(bindings as never);
    if (isCelError(result)) return { ok: false, error: result.message };
    return { ok: true, value: toJson(result) };
  };
}

/** CEL results back to plain JSON values for action payloads. */
function toJson(value: CelValue): unknown {
  if (typeof value === "bigint") return Number(value);
  if (value === null || typeof value !== "object") return value;
  if (isCelList(value)) return [...value].map((v) => toJson(v));
  if (isCelMap(value)) {
    const out: Record<string, unknown> = {};
    // CEL map keys are strings, integers or booleans.
    // eslint-disable-next-line @typescript-eslint/no-base-to-string
    for (const [k, v] of value) out[String(k)] = toJson(v);
    return out;
  }
  // What is left (uint, timestamp, duration, bytes) prints itself.
  // eslint-disable-next-line @typescript-eslint/no-base-to-string
  return String(value);
}
