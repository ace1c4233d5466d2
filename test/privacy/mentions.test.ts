import { describe, expect, it } from "vitest";
import { namedPattern, redact, tokenPattern } from "../../privacy/mentions.ts";
import { nanosOf, subjectHash } from "../../privacy/erase.ts";

describe("how a value can name a subject", () => {
  const named = new RegExp(namedPattern("cust.1"));
  const token = new RegExp(tokenPattern("cust.1"));

  it("finds the id where the platform writes it, and not inside other ids, numbers or text", () => {
    for (const v of [
      "cust.1",
      '{"friend":"cust.1"}',
      'held with msg.subject = "cust.1"',
      "subject:cust.1",
      "subject:cust.1,x",
    ])
      expect([v, named.test(v)]).toEqual([v, true]);
    for (const v of [
      "cust.10",
      "xcust.1",
      "custx1",
      '"cust.1:2"',
      "subject:cust.1:2",
      "subject:cust.12",
      "my cust.1 text",
    ])
      expect([v, named.test(v)]).toEqual([v, false]);
  });

  it("finds the id as a token in text that may not even be JSON (dead letters)", () => {
    for (const v of ["{subject: cust.1, name: oops", "cust.1", "subject:cust.1", "a cust.1, b"])
      expect([v, token.test(v)]).toEqual([v, true]);
    for (const v of ["cust.10", "xcust.1", "cust.1:2", "custx1"]) expect([v, token.test(v)]).toEqual([v, false]);
  });

  it("redacts the mention and keeps JSON valid", () => {
    expect(redact("cust.1", "cust.1")).toBe("");
    expect(JSON.parse(redact('{"a":"cust.1","b":"cust.10"}', "cust.1"))).toEqual({ a: "[erased]", b: "cust.10" });
    expect(redact("owner subject:cust.1 and subject:cust.12", "cust.1")).toBe(
      "owner subject:[erased] and subject:cust.12",
    );
  });
});

describe("erasure records", () => {
  it("keeps InfluxDB's nanoseconds exactly", () => {
    expect(nanosOf("2023-11-14T22:13:20.123456789Z")).toBe("1700000000123456789");
    expect(nanosOf("2023-11-14T22:13:20.5Z")).toBe("1700000000500000000");
    expect(nanosOf("2023-11-14T22:13:20Z")).toBe("1700000000000000000");
  });

  it("name no one: a salted hash differs per record and matches only the same id", () => {
    expect(subjectHash("cust-1", "a")).toBe(subjectHash("cust-1", "a"));
    expect(subjectHash("cust-1", "a")).not.toBe(subjectHash("cust-1", "b"));
    expect(subjectHash("cust-1", "a")).not.toBe(subjectHash("cust-2", "a"));
    expect(subjectHash("cust-1", "a")).not.toContain("cust");
  });
});
