import { describe, expect, it } from "vitest";
import { deliveryReports, KafkaSink, produceRecord, splitConcatenated, splitSinkSecrets } from "./sinks.ts";

const ok = (offset: number) =>
  JSON.stringify({
    error_code: 200,
    cluster_id: "c",
    topic_name: "t",
    partition_id: 0,
    offset,
    key: { type: "STRING" },
  });

describe("delivery reports of a streaming produce", () => {
  it("counts every record written when each report says 200", () => {
    const text = [ok(0), ok(1), ok(2)].join("\n");
    expect(deliveryReports(text, 3)).toEqual({ written: 3, failure: null });
    // Reports may come back to back, with braces inside strings.
    const tricky = `${JSON.stringify({ error_code: 200, note: "a } { b" })}${ok(1)}`;
    expect(deliveryReports(tricky, 2)).toEqual({ written: 2, failure: null });
  });

  it("keeps the records before the first failure and names it", () => {
    const text = [ok(0), JSON.stringify({ error_code: 50002, message: "Not enough replicas" }), ok(2)].join("\n");
    expect(deliveryReports(text, 3)).toEqual({
      written: 1,
      failure: { error_code: 50002, message: "Not enough replicas" },
    });
  });

  it("treats missing reports and garbage as failures, never as written", () => {
    expect(deliveryReports(ok(0), 3)).toEqual({
      written: 1,
      failure: { error_code: 0, message: "2 records got no delivery report" },
    });
    expect(deliveryReports("<html>bad gateway</html>", 1).written).toBe(0);
    expect(deliveryReports("{not json}", 1)).toEqual({
      written: 0,
      failure: { error_code: 0, message: "a delivery report is not JSON" },
    });
  });

  it("splits concatenated objects without parsing them", () => {
    expect(splitConcatenated('{"a":1}{"b":"}"}\n{"c":{"d":2}}')).toEqual(['{"a":1}', '{"b":"}"}', '{"c":{"d":2}}']);
    expect(splitConcatenated('{"s":"\\"}"}')).toEqual(['{"s":"\\"}"}']);
  });
});

describe("produce records", () => {
  const line = { name: "orders.paid", ts: 1, id: "o-1", value: 5, user: "u9" };
  it("carries the archived event as a JSON value, keyed as the sink says", () => {
    expect(produceRecord(line, "stream")).toEqual({
      key: { type: "STRING", data: "orders.paid" },
      value: { type: "JSON", data: line },
    });
    expect(produceRecord(line, "id").key).toEqual({ type: "STRING", data: "o-1" });
    expect(produceRecord(line, "user").key).toEqual({ type: "STRING", data: "u9" });
    // No user, no key (the proxy spreads keyless records over partitions).
    expect(produceRecord({ name: "x", ts: 1 }, "user")).toEqual({
      value: { type: "JSON", data: { name: "x", ts: 1 } },
    });
  });
});

describe("the create body", () => {
  const body = { kind: "kafka", name: "k", url: "https://proxy:8082", topic: "edgepulse.events" };
  it("fills defaults and keeps the secret apart from the settings", () => {
    const parsed = KafkaSink.parse({ ...body, auth: { header: "Authorization", value: "Basic s3cret" } });
    expect(parsed).toMatchObject({ key: "stream", timeout_ms: 10_000, max_backoff_ms: 300_000 });
    const { config, secrets, name } = splitSinkSecrets(parsed);
    expect(name).toBe("k");
    expect(secrets).toEqual({ auth: "Basic s3cret" });
    expect(config.auth_header).toBe("Authorization");
    expect(JSON.stringify(config)).not.toContain("s3cret");
  });

  it("refuses bad topics, prefixes, keys and unknown fields", () => {
    for (const bad of [
      { ...body, topic: "has space" },
      { ...body, streams: ["orders.*"] },
      { ...body, streams: [] },
      { ...body, key: "partition" },
      { ...body, url: "ftp://x" },
      { ...body, brokers: "a:9092" },
    ]) {
      expect(KafkaSink.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
  });
});
