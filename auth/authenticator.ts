import { readFile, writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
import type { Principal } from "./principals.ts";
import { fingerprint, generateToken, hashToken, verifyToken } from "./tokens.ts";

/** Turns a bearer token into a principal, or undefined when it does not know the token. */
export interface Authenticator {
  principal(token: string): Promise<Principal | undefined>;
}

/**
 * Several kinds of token behind one authenticator: each is asked in turn and
 * the first that knows the token answers. Kinds with a prefix of their own
 * (rfd., rfs., rfk.) answer undefined at once for a token that is not theirs;
 * the admin token may be any string (REFEED_ADMIN_TOKEN), so its scrypt check
 * goes last.
 */
export function anyAuthenticator(...auths: Authenticator[]): Authenticator {
  return {
    async principal(token) {
      for (const auth of auths) {
        const found = await auth.principal(token);
        if (found) return found;
      }
      return undefined;
    },
  };
}

/**
 * The admin token comes from REFEED_ADMIN_TOKEN, or is generated at first
 * start: its scrypt hash is stored in the data dir and the token is handed to
 * `announce` once, for the operator to keep.
 */
export async function adminAuthenticator(options: {
  token: string | undefined;
  dataDir: string;
  announce(token: string): void;
}): Promise<Authenticator> {
  let hash: string;
  if (options.token) {
    hash = await hashToken(options.token);
  } else {
    const file = path.join(options.dataDir, "admin-token.hash");
    try {
      hash = (await readFile(file, "utf8")).trim();
    } catch {
      const token = generateToken("rfa");
      hash = await hashToken(token);
      await mkdir(options.dataDir, { recursive: true });
      await writeFile(file, `${hash}\n`, { mode: 0o600 });
      options.announce(token);
    }
  }
  let known: string | undefined;
  return {
    async principal(token) {
      const print = fingerprint(token);
      if (known === print) return { role: "admin", name: "admin" };
      if (!(await verifyToken(token, hash))) return undefined;
      known = print;
      return { role: "admin", name: "admin" };
    },
  };
}
