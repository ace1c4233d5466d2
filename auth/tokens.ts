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

/**
 * A token that names its owner (`rfd.<base64url id>.<secret>`), so a bearer
 * token alone finds the one hash to check, as HTTP calls from devices need.
 */
export function generateOwnedToken(prefix: string, owner: string): string {
  return `${prefix}.${Buffer.from(owner).toString("base64url")}.${randomBytes(32).toString("base64url")}`;
}

/** The owner named in a token from generateOwnedToken, if it is one of that kind. */
export function ownerOf(token: string, prefix: string): string | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[0] !== prefix || !parts[1] || !parts[2]) return undefined;
  return Buffer.from(parts[1], "base64url").toString("utf8");
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
