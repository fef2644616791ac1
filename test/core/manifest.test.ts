import { describe, expect, it } from "vitest";
import { MANIFEST_FORMAT, buildManifest, fileKey, parseManifest, promoteManifest, requireFile, serializeManifest, type Manifest } from "../../core/index.ts";

const hex = (c: string) => c.repeat(64);

/** A valid full manifest; tests change one thing at a time. */
export function fullManifest(overrides: Partial<Manifest> = {}): Omit<Manifest, "format"> {
  return {
    kind: "full",
    id: "20260131T060000Z",
    base: "20260131T060000Z",
    previous: null,
    createdAt: "2026-01-31T06:00:00.000Z",
    completedAt: "2026-01-31T06:00:05.000Z",
    app: { name: "demo", version: "1.2.3" },
    tool: { name: "r2-sqlite-backup", version: "0.1.0" },
    sqliteVersion: "3.50.4",
    files: [
      {
        name: "eventlog@6.db.zst",
        role: "database",
        source: "eventlog@6",
        contentType: "application/zstd",
        compression: "zstd",
        size: 10,
        sha256: hex("a"),
        uncompressedSize: 4096,
        contentChecksum: "zstd-checksum",
      },
      {
        name: "documents.tar.zst",
        role: "documents",
        contentType: "application/zstd",
        compression: "zstd",
        size: 5,
        sha256: hex("c"),
        uncompressedSize: 1024,
        uncompressedSha256: hex("d"),
      },
    ],
    databases: [{ source: "eventlog@6", fileName: "eventlog@6.db", pageSize: 4096, pageCount: 1, integrity: "ok", tables: { eventlog: 3 } }],
    from: [],
    to: [{ source: "eventlog@6", table: "eventlog", columns: ["seqNumGlobal", "seqNumClient"], value: [3, 0] }],
    timings: { snapshotMs: 12, uploadMs: 40, totalMs: 60 },
    ...overrides,
  };
}

describe("the manifest", () => {
  it("builds, serializes and parses back to the same value", () => {
    const m = buildManifest(fullManifest());
    expect(m.format).toBe(MANIFEST_FORMAT);
    expect(parseManifest(serializeManifest(m))).toEqual(m);
  });

  it("accepts an incremental that continues a chain", () => {
    const m = buildManifest({
      ...fullManifest(),
      kind: "incremental",
      id: "20260131T070000Z",
      previous: "20260131T060000Z",
      files: [
        {
          name: "changes.ndjson.zst",
          role: "changes",
          contentType: "application/zstd",
          compression: "zstd",
          size: 1,
          sha256: hex("e"),
          uncompressedSize: 2,
          uncompressedSha256: hex("f"),
        },
      ],
      databases: [],
      from: [{ source: "eventlog@6", table: "eventlog", columns: ["seqNumGlobal", "seqNumClient"], value: [3, 0] }],
      changes: { "eventlog@6/eventlog": 4 },
    });
    expect(m.previous).toBe("20260131T060000Z");
  });

  it.each<[string, Partial<Manifest>, RegExp]>([
    ["a bad sha256", { files: [{ ...fullManifest().files[0]!, sha256: "ABC" }] }, /files\.0\.sha256: expected 64 lowercase hex/],
    ["a negative size", { files: [{ ...fullManifest().files[0]!, size: -1 }] }, /files\.0\.size/],
    ["a bad timestamp", { id: "2026-01-31" }, /id: expected a UTC YYYYMMDDTHHMMSSZ timestamp/],
    ["a full whose base is not itself", { base: "20260130T060000Z" }, /a full backup's base must be its own id/],
    ["a full without a database", { files: [], databases: [] }, /a full backup holds at least one database/],
    ["a database file named for another source", { files: [{ ...fullManifest().files[0]!, name: "other.db.zst" }] }, /should be 'eventlog@6.db.zst'/],
    ["a file listed twice", { files: [fullManifest().files[0]!, fullManifest().files[0]!] }, /listed twice/],
    ["completion before creation", { completedAt: "2026-01-31T05:00:00.000Z" }, /completedAt is before createdAt/],
    ["a failed integrity check", { databases: [{ ...fullManifest().databases[0]!, integrity: "corrupt" as "ok" }] }, /databases\.0\.integrity/],
  ])("rejects %s, naming the field", (_what, overrides, message) => {
    expect(() => buildManifest(fullManifest(overrides))).toThrow(message);
  });

  it("rejects an incremental without a previous set", () => {
    expect(() => buildManifest({ ...fullManifest(), kind: "incremental", id: "20260131T070000Z", previous: null })).toThrow(/an incremental names the previous set/);
  });

  it("rejects text that is not JSON, naming where it came from", () => {
    expect(() => parseManifest("{", "backups/full/20260131T060000Z/metadata.json")).toThrow(/parse manifest 'backups\/full\/20260131T060000Z\/metadata.json': not JSON/);
  });

  it("rejects another format", () => {
    expect(() => parseManifest({ ...buildManifest(fullManifest()), format: "other@2" })).toThrow(/format: /);
  });

  it("promotes a full backup to its UTC day, keeping its content", () => {
    const m = buildManifest(fullManifest({ id: "20260131T230000Z", base: "20260131T230000Z" }));
    const { day, manifest } = promoteManifest(m);
    expect(day).toBe("2026-01-31");
    expect(manifest).toEqual({ ...m, promotedFrom: "20260131T230000Z" });
    expect(fileKey("daily", day, "eventlog@6.db.zst")).toBe("backups/daily/2026-01-31/eventlog@6.db.zst");
  });

  it("finds a file or says what the set holds", () => {
    const m = buildManifest(fullManifest());
    expect(requireFile(m, "documents.tar.zst").sha256).toBe(hex("c"));
    expect(() => requireFile(m, "x.db.zst")).toThrow("find file 'x.db.zst': not in full backup 20260131T060000Z (it holds eventlog@6.db.zst, documents.tar.zst)");
  });
});

describe("the manifest's fields", () => {
  const valid = () => JSON.parse(serializeManifest(buildManifest(fullManifest({ to: [{ ...fullManifest().to[0]!, count: 3 }] })))) as Record<string, any>;
  /** A valid manifest (as parsed JSON) with the value at a dotted path replaced; undefined deletes the field. */
  const withField = (path: string, value: unknown) => {
    const m = valid();
    const keys = path.split(".");
    const parent = keys.slice(0, -1).reduce((o, k) => o[k], m);
    if (value === undefined) delete parent[keys.at(-1)!];
    else parent[keys.at(-1)!] = value;
    return m;
  };
  const livestore = { role: "eventlog", head: [3, 0] };

  // Each field's rule: one value it takes, one it refuses, and the message naming the path and what was expected.
  it.each<[string, unknown, unknown, string]>([
    ["format", MANIFEST_FORMAT, "r2-sqlite-backup/manifest@2", "format: expected 'r2-sqlite-backup/manifest@1', got r2-sqlite-backup/manifest@2"],
    ["kind", "full", "daily", "kind: expected 'full' or 'incremental', got daily"],
    ["id", "20260131T060000Z", "20260131T060000", "id: expected a UTC YYYYMMDDTHHMMSSZ timestamp, got 20260131T060000"],
    ["base", "20260131T060000Z", "20260230T060000Z", "base: expected a UTC YYYYMMDDTHHMMSSZ timestamp, got 20260230T060000Z"],
    ["previous", null, 5, "previous: expected a UTC YYYYMMDDTHHMMSSZ timestamp, got 5"],
    ["promotedFrom", "20260131T060000Z", "yesterday", "promotedFrom: expected a UTC YYYYMMDDTHHMMSSZ timestamp, got yesterday"],
    ["createdAt", "2026-01-31T06:00:00Z", "2026-01-31T06:00:00+00:00", "createdAt: expected an ISO time in UTC (2026-01-31T06:00:00.000Z), got 2026-01-31T06:00:00+00:00"],
    ["completedAt", "2026-01-31T06:00:05.123456Z", "2026-02-30T06:00:05.000Z", "completedAt: expected an ISO time in UTC"],
    ["capturedAt", "2026-01-31T06:00:00.000Z", 1769839200000, "capturedAt: expected an ISO time in UTC (2026-01-31T06:00:00.000Z), got 1769839200000"],
    ["sources", [{ source: "eventlog@6", path: "a/eventlog@6.db" }], { source: "eventlog@6" }, 'sources: expected a list, got {"source":"eventlog@6"}'],
    ["sources", [{ source: "eventlog@6" }], [{ source: "" }], "sources.0.source: expected a non-empty string, got an empty string"],
    ["sources", [{ source: "eventlog@6" }], [{ source: "eventlog@6", path: "a/../b.db" }], "sources.0.path: expected a relative path of safe segments"],
    ["app", { name: "", version: "" }, "demo", "app: expected an object, got demo"],
    ["app.version", "2.0.0", 2, "app.version: expected a string, got 2"],
    ["tool.name", "r2backup", undefined, "tool.name: expected a string, got nothing"],
    ["sqliteVersion", "3.51.0", "", "sqliteVersion: expected a non-empty string, got an empty string"],
    ["host", "box-1", null, "host: expected a string, got null"],
    ["files", fullManifest().files, {}, "files: expected a list, got {}"],
    ["files.0.name", "eventlog@6.db.zst", "", "files.0.name: expected a non-empty string, got an empty string"],
    ["files.1.role", "documents", "wal", "files.1.role: expected 'database', 'documents' or 'changes', got wal"],
    ["files.0.source", "eventlog@6", 6, "files.0.source: expected a string, got 6"],
    ["files.0.contentType", "application/octet-stream", "", "files.0.contentType: expected a non-empty string, got an empty string"],
    ["files.0.compression", "none", "gzip", "files.0.compression: expected 'zstd' or 'none', got gzip"],
    ["files.0.size", 0, -1, "files.0.size: expected a whole number >= 0, got -1"],
    ["files.0.sha256", hex("0"), hex("A"), `files.0.sha256: expected 64 lowercase hex characters (sha256), got ${hex("A")}`],
    ["files.0.uncompressedSize", Number.MAX_SAFE_INTEGER, 1.5, "files.0.uncompressedSize: expected a whole number >= 0, got 1.5"],
    ["files.0.uncompressedSha256", hex("9"), "a".repeat(63), "files.0.uncompressedSha256: expected 64 lowercase hex characters (sha256)"],
    ["files.0.contentChecksum", "zstd-checksum", "xxh64", "files.0.contentChecksum: expected 'zstd-checksum', got xxh64"],
    ["databases", fullManifest().databases, null, "databases: expected a list, got null"],
    ["databases.0.source", "eventlog@6", "", "databases.0.source: expected a non-empty string, got an empty string"],
    ["databases.0.fileName", undefined, 1, "databases.0.fileName: expected a string, got 1"],
    ["databases.0.pageSize", 65536, 0, "databases.0.pageSize: expected a whole number >= 1, got 0"],
    ["databases.0.pageCount", 0, "1", "databases.0.pageCount: expected a whole number >= 0, got 1"],
    ["databases.0.integrity", "ok", "corrupt", "databases.0.integrity: expected 'ok', got corrupt"],
    ["databases.0.tables", {}, [], "databases.0.tables: expected an object, got []"],
    ["databases.0.tables.eventlog", 0, -3, "databases.0.tables.eventlog: expected a whole number >= 0, got -3"],
    ["databases.0.path", "store/eventlog@6.db", "/store/eventlog@6.db", "databases.0.path: expected a relative path of safe segments"],
    ["databases.0.coverage", "none", "all", "databases.0.coverage: expected 'rows', 'derived' or 'none', got all"],
    ["databases.0.derivedFrom", undefined, "", "databases.0.derivedFrom: expected a non-empty string, got an empty string"],
    ["databases.0.otherTablesSha256", hex("e"), "sha256:x", "databases.0.otherTablesSha256: expected 64 lowercase hex characters (sha256), got sha256:x"],
    ["databases.0.livestore", livestore, [], "databases.0.livestore: expected an object, got []"],
    ["databases.0.livestore", { ...livestore, head: null }, { ...livestore, role: "writer" }, "databases.0.livestore.role: expected 'eventlog' or 'state', got writer"],
    ["databases.0.livestore", livestore, { ...livestore, head: [3] }, "databases.0.livestore.head: expected a list of 2, got [3]"],
    ["databases.0.livestore", { ...livestore, head: [-1, 0] }, { ...livestore, head: [3, 0.5] }, "databases.0.livestore.head.1: expected a whole number, got 0.5"],
    ["from", [], null, "from: expected a list, got null"],
    ["to", [], "eventlog", "to: expected a list, got eventlog"],
    ["to.0.source", "eventlog@6", "", "to.0.source: expected a non-empty string, got an empty string"],
    ["to.0.table", "eventlog", 1, "to.0.table: expected a non-empty string, got 1"],
    ["to.0.columns", ["id"], [], "to.0.columns: expected a list of at least 1, got []"],
    ["to.0.columns", ["a", "b", "c"], ["a", ""], "to.0.columns.1: expected a non-empty string, got an empty string"],
    ["to.0.value", null, 3, "to.0.value: expected a list, got 3"],
    ["to.0.value", ["k", 1.5], [true], "to.0.value.0: expected a number or a string, got true"],
    ["to.0.count", 0, -1, "to.0.count: expected a whole number >= 0, got -1"],
    ["changes", { "eventlog@6/eventlog": 4 }, { "eventlog@6/eventlog": "4" }, "changes.eventlog@6/eventlog: expected a whole number >= 0, got 4"],
    ["timings", { totalMs: 0.25 }, { totalMs: -1 }, "timings.totalMs: expected a number >= 0, got -1"],
  ])("%s: takes %j, refuses %j", (path, good, bad, message) => {
    expect(() => parseManifest(withField(path, good))).not.toThrow();
    expect(() => parseManifest(withField(path, bad), "m.json")).toThrow(`validate manifest 'm.json': ${message}`);
  });

  it("needs a way to check each zstd object's decompressed bytes: frame checksums (0.3) or their sha256 (before)", () => {
    const withFile = (f: object) => ({ ...valid(), files: [{ ...valid().files[0], ...f }] });
    const check = (f: object) => () => parseManifest(withFile({ contentChecksum: undefined, uncompressedSha256: undefined, ...f }), "m.json");
    expect(check({ contentChecksum: "zstd-checksum" })).not.toThrow();
    expect(check({ uncompressedSha256: hex("b") })).not.toThrow();
    expect(check({ contentChecksum: "zstd-checksum", uncompressedSha256: hex("b") })).not.toThrow();
    // Stored as they are, the bytes are checked by the sha256 of what is stored.
    expect(check({ compression: "none" })).not.toThrow();
    expect(check({})).toThrow("validate manifest 'm.json': file 'eventlog@6.db.zst' has nothing to check its decompressed bytes by (contentChecksum or uncompressedSha256)");
  });

  it("refuses a manifest that is not an object, and names every problem at once", () => {
    expect(() => parseManifest("[]")).toThrow("validate manifest 'metadata.json': (root): expected an object, got [] (was it written by this tool's version?)");
    expect(() => parseManifest({ format: MANIFEST_FORMAT, kind: "full" })).toThrow(
      /id: expected a UTC .*; base: .*; app: expected an object, got nothing; .*timings: expected an object, got nothing/,
    );
  });

  it("drops fields it does not know, at every level (a newer writer's additions), keeping the rest", () => {
    const m = valid();
    const parsed = parseManifest({ ...m, extra: 1, app: { ...m.app, extra: 2 }, files: m.files.map((f: object) => ({ ...f, extra: 3 })), to: [{ ...m.to[0], extra: 4 }] });
    expect(parsed).toStrictEqual(parseManifest(m));
    expect(JSON.stringify(parsed)).not.toContain("extra");
  });
});

describe("the manifest's record of databases (paths, coverage, LiveStore heads)", () => {
  const state = {
    source: "todos.state1@6",
    pageSize: 4096,
    pageCount: 1,
    integrity: "ok" as const,
    tables: {},
    path: "todos/state1@6.db",
    coverage: "derived" as const,
    derivedFrom: "todos.eventlog@6",
    livestore: { role: "state" as const, head: [3, 0] as [number, number] },
  };
  const log = {
    source: "todos.eventlog@6",
    pageSize: 4096,
    pageCount: 1,
    integrity: "ok" as const,
    tables: { eventlog: 3 },
    path: "todos/eventlog@6.db",
    coverage: "rows" as const,
    otherTablesSha256: hex("e"),
    livestore: { role: "eventlog" as const, head: [3, 0] as [number, number] },
  };
  const file = (source: string) => ({
    name: `${source}.db.zst`,
    role: "database" as const,
    source,
    contentType: "application/zstd",
    compression: "zstd" as const,
    size: 10,
    sha256: hex("a"),
    uncompressedSize: 4096,
    uncompressedSha256: hex("b"),
  });
  const manifest = (databases: Manifest["databases"]) => fullManifest({ files: databases.map((d) => file(d.source)), databases, to: [] });

  it("accepts an event log with its derived state DB, and round-trips them", () => {
    const m = buildManifest(manifest([log, state]));
    expect(parseManifest(serializeManifest(m)).databases).toEqual([log, state]);
  });

  it.each([
    ["a state DB derived from a database that is not an event log", [{ ...log, livestore: undefined }, state], /derived from 'todos.eventlog@6', which is not an event log/],
    ["coverage 'derived' without derivedFrom", [log, { ...state, derivedFrom: undefined }], /coverage 'derived' and derivedFrom go together/],
    ["two databases on one path", [log, { ...state, path: "todos/eventlog@6.db" }], /two databases have the path 'todos\/eventlog@6.db'/],
    ["a path that climbs out of the data directory", [{ ...log, path: "../etc/passwd" }], /path/],
    ["an absolute path", [{ ...log, path: "/data/todos/eventlog@6.db" }], /path/],
  ])("rejects %s", (_name, databases, message) => {
    expect(() => buildManifest(manifest(databases as Manifest["databases"]))).toThrow(message);
  });

  it("a manifest written before paths and coverage existed still parses (older sets stay restorable)", () => {
    const old = JSON.parse(serializeManifest(buildManifest(fullManifest())));
    expect(old.databases[0]).not.toHaveProperty("coverage");
    expect(parseManifest(old).databases[0]!.path).toBeUndefined();
  });
});
