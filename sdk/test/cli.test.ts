/**
 * The CLI's pure parts: argument parsing (commander, actions recorded), configuration precedence, record
 * splitting across chunk boundaries, CSV column mapping, and the ids derived from a file's identity.
 * The CLI against the real stack: test/e2e/cli.test.ts.
 */
import { CommanderError } from "commander";
import { describe, expect, it } from "vitest";
import { type ConfigFile, configPath, resolveSettings } from "../src/cli/config.ts";
import type { ImportOptions } from "../src/cli/import.ts";
import { type Actions, createProgram } from "../src/cli/program.ts";
import {
  csvEvent,
  csvMapping,
  detectFormat,
  fileIdentity,
  importId,
  JsonArraySplitter,
  jsonEvent,
  LineSplitter,
  type Rec,
} from "../src/cli/records.ts";
import { MAX_ID_LENGTH } from "../src/limits.ts";

function recorder() {
  const calls: { cmd: string; args: unknown[]; globals: unknown }[] = [];
  const rec =
    (cmd: string) =>
    async (...args: unknown[]) => {
      calls.push({ cmd, args: args.slice(0, -1), globals: args.at(-1) });
      return undefined;
    };
  const actions = {
    import: rec("import"),
    tail: rec("tail"),
    query: rec("query"),
    tenantsCreate: rec("tenantsCreate"),
    tenantsList: rec("tenantsList"),
    keysCreate: rec("keysCreate"),
    keysList: rec("keysList"),
    keysRevoke: rec("keysRevoke"),
  } as unknown as Actions;
  const parse = async (...argv: string[]) => {
    const p = createProgram(actions, { writeErr: () => {}, writeOut: () => {} });
    await p.parseAsync(argv, { from: "user" });
    return calls.at(-1);
  };
  return { parse };
}

describe("argument parsing", () => {
  it("maps import's CSV flags, repeatable --dim and numbers; global flags before or after the command", async () => {
    const { parse } = recorder();
    const call = await parse(
      "--url",
      "http://x:1",
      "import",
      "f.csv",
      "--name",
      "s",
      "--value-column",
      "amount",
      "--dim",
      "country",
      "--dim",
      "plan=tier",
      "--batch-size",
      "500",
      "--resume",
      "--no-gzip",
      "--json",
    );
    expect(call?.cmd).toBe("import");
    const [file, o] = call?.args as [string, ImportOptions];
    expect(file).toBe("f.csv");
    expect(o).toMatchObject({
      name: "s",
      valueColumn: "amount",
      dims: ["country", "plan=tier"],
      batchSize: 500,
      batchBytes: 1_048_576,
      concurrency: 4,
      resume: true,
      gzip: false,
      progress: "none",
    });
    expect(call?.globals).toMatchObject({ url: "http://x:1", json: true });
  });

  it("refuses bad numbers, unknown options and a missing --scope with commander's usage error", async () => {
    const { parse } = recorder();
    for (const argv of [
      ["import", "f", "--batch-size", "0"],
      ["import", "f", "--batch-size", "1.5"],
      ["import", "f", "--bogus"],
      ["keys", "create"],
      ["keys", "create", "--scope", "root"],
      ["tail", "s", "--window", "2m"],
    ]) {
      await expect(parse(...argv), argv.join(" ")).rejects.toBeInstanceOf(CommanderError);
    }
  });

  it("routes tenants, keys, query and tail", async () => {
    const { parse } = recorder();
    expect(await parse("tenants", "create", "acme", "--exports")).toMatchObject({
      cmd: "tenantsCreate",
      args: ["acme", { exports: true }],
    });
    expect(await parse("keys", "create", "--scope", "read", "--name", "wall")).toMatchObject({
      cmd: "keysCreate",
      args: [{ scope: "read", name: "wall" }],
    });
    expect(await parse("keys", "revoke", "key_1")).toMatchObject({ cmd: "keysRevoke", args: ["key_1"] });
    expect(await parse("query", "--file", "q.json", "--csv")).toMatchObject({
      cmd: "query",
      args: [undefined, { file: "q.json", csv: true }],
    });
    expect(await parse("tail", "s", "--window", "5m", "--count", "3", "--json")).toMatchObject({
      cmd: "tail",
      args: ["s", { window: "5m", count: 3, json: true }],
    });
  });
});

describe("configuration precedence: flags, then environment, then config file", () => {
  const file: ConfigFile = { url: "http://file", key: "k_file", keys: { read: "k_file_read" }, token: "t_file" };

  it("takes the flag over the environment over the file", () => {
    const env = { EDGEPULSE_URL: "http://env", EDGEPULSE_KEY: "k_env", EDGEPULSE_TOKEN: "t_env" };
    expect(resolveSettings({ url: "http://flag", key: "k_flag", token: "t_flag" }, env, file, "read")).toMatchObject({
      url: "http://flag",
      key: "k_flag",
      token: "t_flag",
    });
    expect(resolveSettings({}, env, file, "read")).toMatchObject({ url: "http://env", key: "k_env", token: "t_env" });
    expect(resolveSettings({}, {}, file, "read")).toMatchObject({ url: "http://file", key: "k_file", token: "t_file" });
    expect(resolveSettings({}, {}, {}, "read")).toMatchObject({ url: "http://127.0.0.1:8787", key: undefined });
  });

  it("picks the quick start's INGEST / READ / ADMIN by the command's role; admin stands in for both", () => {
    const env = { INGEST: "i", READ: "r", ADMIN: "a" };
    expect(resolveSettings({}, env, {}, "ingest").key).toBe("i");
    expect(resolveSettings({}, env, {}, "read").key).toBe("r");
    expect(resolveSettings({}, env, {}, "admin").key).toBe("a");
    expect(resolveSettings({}, { ADMIN: "a" }, {}, "ingest").key).toBe("a");
    expect(resolveSettings({}, { ...env, EDGEPULSE_KEY: "e" }, {}, "ingest").key).toBe("e");
    // Any key in the environment beats the file's.
    expect(resolveSettings({}, { READ: "r" }, { key: "f" }, "read").key).toBe("r");
    expect(resolveSettings({}, {}, { keys: { admin: "fa" } }, "read").key).toBe("fa");
  });

  it("finds the config file: --config, $EDGEPULSE_CONFIG, $XDG_CONFIG_HOME, ~/.config", () => {
    expect(configPath({ config: "/c.json" }, { EDGEPULSE_CONFIG: "/e.json" })).toEqual({
      path: "/c.json",
      explicit: true,
    });
    expect(configPath({}, { EDGEPULSE_CONFIG: "/e.json" })).toEqual({ path: "/e.json", explicit: true });
    expect(configPath({}, { XDG_CONFIG_HOME: "/x" }, "/home/u").path).toBe("/x/edgepulse/config.json");
    expect(configPath({}, {}, "/home/u")).toEqual({ path: "/home/u/.config/edgepulse/config.json", explicit: false });
  });

  it("refuses a URL that is not http(s)", () => {
    expect(() => resolveSettings({ url: "ftp://x" }, {}, {})).toThrow(/http/);
    expect(() => resolveSettings({ url: "nope" }, {}, {})).toThrow(/not a URL/);
  });
});

/** Feeds `text` to a splitter in every pair of chunks (split at each position). */
function everySplit(text: string, run: (chunks: string[]) => Rec[]): Rec[] {
  const whole = run([text]);
  for (let i = 0; i <= text.length; i++) expect(run([text.slice(0, i), text.slice(i)])).toEqual(whole);
  return whole;
}

describe("record splitting", () => {
  it("NDJSON: lines numbered as in the file, blank lines skipped but counted, CRLF, no final newline", () => {
    const recs = everySplit('{"a":1}\r\n\n  \n{"b":"x\\ny"}\n{"c":3}', (chunks) => {
      const s = new LineSplitter();
      const out: Rec[] = [];
      for (const c of chunks) s.push(c, out);
      return s.end(out);
    });
    expect(recs).toEqual([
      { line: 1, raw: '{"a":1}' },
      { line: 4, raw: '{"b":"x\\ny"}' },
      { line: 5, raw: '{"c":3}' },
    ]);
  });

  it("JSON array: elements by position, brackets, commas and escaped quotes inside strings kept", () => {
    const text = ' [ {"name":"a","dims":{"k":"],\\"{"}} , {"name":"b","value":2},\n3, "s]" ] \n';
    const recs = everySplit(text, (chunks) => {
      const s = new JsonArraySplitter();
      const out: Rec[] = [];
      for (const c of chunks) s.push(c, out);
      s.end();
      return out;
    });
    expect(recs.map((r) => [r.line, JSON.parse(r.raw)])).toEqual([
      [1, { name: "a", dims: { k: '],"{' } }],
      [2, { name: "b", value: 2 }],
      [3, 3],
      [4, "s]"],
    ]);
  });

  it("JSON array: [] is empty; an unclosed array or trailing content is an error", () => {
    const s = new JsonArraySplitter();
    expect(s.push("[ ]")).toEqual([]);
    expect(() => s.end()).not.toThrow();
    const t = new JsonArraySplitter();
    t.push('[{"a":1},');
    expect(() => t.end()).toThrow(/not closed/);
    expect(() => new JsonArraySplitter().push("[1] x")).toThrow(/after/);
    expect(() => new JsonArraySplitter().push("{}")).toThrow(/start/);
  });

  it("detects the format by name (.gz stripped), else by content", () => {
    expect(detectFormat("/a/e.ndjson.gz", "[")).toBe("ndjson");
    expect(detectFormat("/a/e.csv", "{")).toBe("csv");
    expect(detectFormat("/a/e.json", "\n [")).toBe("json");
    expect(detectFormat("/a/e.json", '{"name":1}\n')).toBe("ndjson");
    expect(detectFormat("/a/e.data", "\uFEFF[")).toBe("json");
    expect(detectFormat("/a/e.data", "name,value")).toBe("csv");
  });
});

describe("ids", () => {
  it("derives imp:<identity>:<line> from the content's first 64 KiB, within the collector's id length", () => {
    const id = fileIdentity(new TextEncoder().encode('{"name":"a"}\n'));
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(fileIdentity(new TextEncoder().encode('{"name":"a"}\n'))).toBe(id);
    expect(fileIdentity(new TextEncoder().encode('{"name":"b"}\n'))).not.toBe(id);
    expect(importId(id, 12)).toBe(`imp:${id}:12`);
    expect(importId(id, Number.MAX_SAFE_INTEGER).length).toBeLessThanOrEqual(MAX_ID_LENGTH);
  });

  it("JSON records keep their own id and name; others get the derived id and --name", () => {
    const m = { identity: "abc", name: "fallback" };
    expect(jsonEvent({ line: 3, raw: '{"value":1}' }, m)).toEqual({
      event: { value: 1, name: "fallback", id: "imp:abc:3" },
    });
    expect(jsonEvent({ line: 3, raw: '{"name":"s","id":"mine"}' }, m)).toEqual({ event: { name: "s", id: "mine" } });
    expect(jsonEvent({ line: 1, raw: "{nope" }, m).error?.code).toBe("malformed_json");
    expect(jsonEvent({ line: 1, raw: "[1]" }, m).error?.code).toBe("not_an_object");
    expect(jsonEvent({ line: 1, raw: '{"name":"s","dims":{"a":{"b":1}}}' }, m).error?.code).toBe("too_deep");
    expect(jsonEvent({ line: 1, raw: '{"name":"s","user":["x"]}' }, m).error?.code).toBe("too_deep");
  });
});

describe("CSV mapping", () => {
  const header = ["when", "amount", "who", "country", "plan", "name", "id"];

  it("maps columns by flag, with name/value/user/ts/id by default, dims renamed by col=key", () => {
    const m = csvMapping(
      header,
      { valueColumn: "amount", userColumn: "who", tsColumn: "when", dims: ["country", "plan=tier"] },
      "ff",
    );
    expect(m).toMatchObject({ nameColumn: "name", valueColumn: "amount", idColumn: "id" });
    const row = { when: "1795000000000", amount: " 12.5 ", who: "u1", country: "DE", plan: "", name: "s", id: "" };
    expect(csvEvent(row, 7, m)).toEqual({
      name: "s",
      id: "imp:ff:7",
      value: 12.5,
      user: "u1",
      ts: 1_795_000_000_000,
      dims: { country: "DE" },
    });
    expect(csvEvent({ ...row, amount: "abc", when: "2026-11-22T10:00:00Z", id: "x1", plan: "pro" }, 8, m)).toEqual({
      name: "s",
      id: "x1",
      value: "abc",
      user: "u1",
      ts: "2026-11-22T10:00:00Z",
      dims: { country: "DE", tier: "pro" },
    });
  });

  it("a fixed --name wins; unknown columns and a missing stream name are errors", () => {
    expect(csvMapping(["v"], { name: "fixed" }, "ff")).toMatchObject({ name: "fixed", nameColumn: undefined });
    expect(() => csvMapping(["v"], {}, "ff")).toThrow(/--name/);
    expect(() => csvMapping(["v"], { name: "s", valueColumn: "nope" }, "ff")).toThrow(/no such column/);
    expect(() => csvMapping(["v"], { name: "s", dims: ["x=y"] }, "ff")).toThrow(/no such column/);
    expect(() => csvMapping(["v", "name"], { name: "s", nameColumn: "name" }, "ff")).toThrow(/not both/);
  });
});
