import { findExecutable } from "../store/influxd.ts";

/** A program `refeed cluster` runs is not installed; the message names it and how to get it. */
export class MissingBinaryError extends Error {
  readonly code = "REFEED_BINARY_MISSING";
  constructor(binary: string, debianPackage: string, variable: string) {
    const where = binary.includes("/") ? ` (${variable})` : " (looked on PATH, in /usr/bin and /usr/sbin)";
    super(
      `${binary} not found${where}: run 'npm run setup', which installs Debian's ${debianPackage} package, ` +
        `or name the binary with ${variable}`,
    );
  }
}

/** The path of a program (a name looked up on PATH, or a path), or a MissingBinaryError naming it. */
export async function requireBinary(binary: string, debianPackage: string, variable: string): Promise<string> {
  const found = await findExecutable(binary);
  if (!found) throw new MissingBinaryError(binary, debianPackage, variable);
  return found;
}
