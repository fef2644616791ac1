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
        uncompressedSha256: hex("b"),
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
