import { describe, expect, it } from "vitest";
import {
  hashKey,
  isStreamLimited,
  keyPrefix,
  newKey,
  PREFIX_RANDOM_CHARS,
  prefixesWithin,
  SCOPES,
  scopeAllows,
  secretsEqual,
  streamAllowed,
} from "./keys.ts";

describe("API keys", () => {
  it("have 256 random bits behind a readable scope", () => {
    for (const scope of SCOPES) expect(newKey(scope)).toMatch(new RegExp(`^ep_${scope}_[A-Za-z0-9_-]{43}$`));
    expect(new Set(Array.from({ length: 100 }, () => newKey("read"))).size).toBe(100);
  });

  it("show only a short prefix, even when the random part holds underscores", () => {
    // Regression: the prefix was cut at the last "_", which can sit deep inside the random part.
    expect(keyPrefix("ep_read_abcdef_ghijklmnop_qrstuv")).toBe("ep_read_abcdef");
    for (let i = 0; i < 500; i++) {
      const scope = SCOPES[i % 3];
      const key = newKey(scope);
      const prefix = keyPrefix(key);
      expect(prefix.length).toBe(`ep_${scope}_`.length + PREFIX_RANDOM_CHARS);
      expect(key.startsWith(prefix)).toBe(true);
    }
  });

  it("hash to SHA-256 hex and compare in constant time", async () => {
    expect(await hashKey("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(await secretsEqual("same", "same")).toBe(true);
    expect(await secretsEqual("same", "different")).toBe(false);
  });

  it("let admin keys do what read and ingest keys do, and nothing cross the other way", () => {
    expect(scopeAllows("admin", "read")).toBe(true);
    expect(scopeAllows("admin", "ingest")).toBe(true);
    expect(scopeAllows("read", "ingest")).toBe(false);
    expect(scopeAllows("ingest", "read")).toBe(false);
    expect(scopeAllows("read", "admin")).toBe(false);
  });

  it("limit a credential to stream-name prefixes, as plain prefixes", () => {
    const cases: Array<[string[] | null | undefined, string, boolean]> = [
      [null, "anything", true],
      [undefined, "anything", true],
      [["checkout."], "checkout.completed", true],
      [["checkout."], "checkout.", true],
      [["checkout."], "checkout", false],
      [["checkout."], "checkouts.completed", false],
      [["checkout."], "x.checkout.completed", false],
      [["checkout.", "cart"], "cart.added", true],
      [["checkout.", "cart"], "carts", true],
      [["checkout.", "cart"], "page.view", false],
      // Case matters, as stream names do.
      [["Checkout."], "checkout.completed", false],
    ];
    for (const [streamPrefixes, name, want] of cases) {
      expect(streamAllowed({ streamPrefixes }, name), `${JSON.stringify(streamPrefixes)} ${name}`).toBe(want);
    }
    expect(isStreamLimited({ streamPrefixes: null })).toBe(false);
    expect(isStreamLimited({})).toBe(false);
    expect(isStreamLimited({ streamPrefixes: ["a"] })).toBe(true);
  });

  it("let a limited admin hand out only narrower prefixes", () => {
    expect(prefixesWithin(null, null)).toBe(true);
    expect(prefixesWithin(["a."], null)).toBe(true);
    expect(prefixesWithin(null, ["a."])).toBe(false);
    expect(prefixesWithin(["a.b."], ["a."])).toBe(true);
    expect(prefixesWithin(["a.", "b"], ["a.", "b"])).toBe(true);
    expect(prefixesWithin(["a"], ["a."])).toBe(false);
    expect(prefixesWithin(["a.", "c."], ["a.", "b."])).toBe(false);
  });
});
