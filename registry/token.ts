import { randomBytes, scrypt as scryptCb, timingSafeEqual, createHash, type ScryptOptions } from "node:crypto";

const scrypt = (password: string, salt: Buffer, keylen: number, options: ScryptOptions) =>
  new Promise<Buffer>((resolve, reject) =>
    scryptCb(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key))),
  );

/**
 * Tokens carry 256 random bits, so the KDF does not have to make guessing
 * expensive; it makes a leaked registry useless. N=2^14 keeps one check at a
 * few milliseconds on the libuv pool, which a reconnect storm of thousands of
 * devices can afford.
 */
const PARAMS = { N: 1 << 14, r: 8, p: 1 } as const;
const KEYLEN = 32;

export function generateToken(prefix = "rfd"): string {
  return `${prefix}_${randomBytes(32).toString("base64url")}`;
}

/** `scrypt$N$r$p$salt$hash`, self-describing so the parameters can change later. */
export async function hashToken(token: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(token, salt, KEYLEN, { ...PARAMS, maxmem: 64 * 1024 * 1024 });
  return ["scrypt", PARAMS.N, PARAMS.r, PARAMS.p, salt.toString("base64url"), key.toString("base64url")].join("$");
}

export async function verifyToken(token: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split("$");
  if (scheme !== "scrypt" || !salt || !hash) return false;
  const expected = Buffer.from(hash, "base64url");
  const key = await scrypt(token, Buffer.from(salt, "base64url"), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
    maxmem: 64 * 1024 * 1024,
  });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** A fast fingerprint used only in memory to skip re-running scrypt for a token already verified. */
export function fingerprint(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}
