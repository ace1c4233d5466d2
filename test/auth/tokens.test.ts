import { describe, expect, it } from "vitest";
import { generateOwnedToken, hashToken, ownerOf, verifyToken } from "../../auth/tokens.ts";

describe("tokens", () => {
  it("name their owner and carry 256 random bits", () => {
    const token = generateOwnedToken("rfd", "atm-0042.lobby");
    expect(ownerOf(token, "rfd")).toBe("atm-0042.lobby");
    expect(token.split(".")[2]).toHaveLength(43);
    expect(generateOwnedToken("rfd", "a")).not.toBe(generateOwnedToken("rfd", "a"));
  });

  it("are not taken for another kind or a malformed string", () => {
    expect(ownerOf(generateOwnedToken("rfs", "cust-1"), "rfd")).toBeUndefined();
    expect(ownerOf("rfd.only-two", "rfd")).toBeUndefined();
    expect(ownerOf("garbage", "rfd")).toBeUndefined();
  });

  it("verify against their scrypt hash only", async () => {
    const token = generateOwnedToken("rfd", "d1");
    const hash = await hashToken(token);
    expect(hash).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(hash).not.toContain(token.split(".")[2]);
    expect(await verifyToken(token, hash)).toBe(true);
    expect(await verifyToken(`${token}x`, hash)).toBe(false);
    expect(await verifyToken(token, "plain")).toBe(false);
  });
});
