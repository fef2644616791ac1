import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { MANIFEST_FORMAT, parseManifest } from "../../core/index.ts";
import { backup } from "../../job/backup.ts";
import { rebuildChain } from "../../job/chain.ts";
import { restore } from "../../job/restore/index.ts";
import { appendDemoEvents } from "../../bench/livestore-db.ts";
import { useTestBucket } from "./bucket.ts";
import { dumpDatabase } from "./restore-fixtures.ts";

/**
 * The manifest's format version is written and read, and the backups of an older package stay restorable
 * (issue 18): `fixtures/bucket-0.1.0/` is a bucket written by 0.1.0, restored here by the current code.
 */
const t = useTestBucket("manifest-format-");
const FIXTURE = fileURLToPath(new URL("./fixtures/bucket-0.1.0/", import.meta.url));

/** Every object of the fixture bucket: its key (the path under the folder) and bytes. */
async function fixtureObjects(): Promise<{ key: string; bytes: Buffer }[]> {
  const files = (await readdir(join(FIXTURE, "backups"), { recursive: true, withFileTypes: true })).filter((f) => f.isFile());
  return Promise.all(
    files.map(async (f) => ({ key: `backups/${join(f.parentPath, f.name).slice(join(FIXTURE, "backups").length + 1)}`, bytes: await readFile(join(f.parentPath, f.name)) })),
  );
}

/** A digest of a database's logical content (schema and every row), or of one table's rows. */
function contentDigest(path: string, table?: string): string {
  const dump = dumpDatabase(path);
  return createHash("sha256")
    .update(JSON.stringify(table === undefined ? dump : dump.rows[table]))
    .digest("hex");
}

describe("the manifest format version", () => {
  it("is r2-sqlite-backup/manifest@1, and a backup writes it into metadata.json", async () => {
    // Changing it is a breaking change of the bucket format: a new major version (CHANGELOG.md) and a new fixture.
    expect(MANIFEST_FORMAT).toBe("r2-sqlite-backup/manifest@1");
    const db = join(t.dir, "app.db");
    appendDemoEvents(db, 5, 1);
    const r = await backup({ store: t.bucket.store, databases: [{ path: db }], kind: "full", tmpDir: t.dir });
    const stored = await t.bucket.store.get(r.manifestKey);
    const text = await new Response(stored!.body).text();
    expect(JSON.parse(text)).toMatchObject({ format: MANIFEST_FORMAT, tool: { name: "r2backup" } });
    expect(parseManifest(text).format).toBe(MANIFEST_FORMAT);
  });

  it("is read: a manifest of another format is refused, naming the format it expects", () => {
    const text = JSON.stringify({ format: "r2-sqlite-backup/manifest@2" });
    expect(() => parseManifest(text, "backups/full/20261201T060000Z/metadata.json")).toThrow(
      /backups\/full\/20261201T060000Z\/metadata\.json.*format.*r2-sqlite-backup\/manifest@1/s,
    );
  });
});

describe("a bucket written by 0.1.0", () => {
  it("parses with today's manifest schema", async () => {
    const manifests = (await fixtureObjects()).filter((o) => o.key.endsWith("/metadata.json"));
    expect(manifests.map((m) => m.key).sort()).toEqual(["backups/full/20261201T060000Z/metadata.json", "backups/incremental/20261201T070000Z/metadata.json"]);
    for (const m of manifests)
      expect(parseManifest(m.bytes.toString("utf8"), m.key)).toMatchObject({ format: "r2-sqlite-backup/manifest@1", tool: { name: "r2backup", version: "0.1.0" } });
  });

  it("restores with today's code: the full at its time, and the full plus its incremental at latest", async () => {
    for (const o of await fixtureObjects()) await t.bucket.store.put(o.key, o.bytes);
    const atFull = join(t.dir, "at-full.db");
    const first = await restore({ store: t.bucket.store, to: atFull, at: new Date("2026-12-01T06:30:00Z") });
    expect(first).toMatchObject({ restoresTo: "20261201T060000Z", chain: [], integrity: "ok" });
    expect(dumpDatabase(atFull).rows.eventlog).toHaveLength(12);
    expect(contentDigest(atFull)).toBe(FULL_DIGEST);

    const latest = join(t.dir, "latest.db");
    const second = await restore({ store: t.bucket.store, to: latest });
    expect(second).toMatchObject({ restoresTo: "20261201T070000Z", chain: [{ kind: "incremental", id: "20261201T070000Z" }], integrity: "ok", rows: { "app/eventlog": 5 } });
    expect(dumpDatabase(latest).rows.eventlog).toHaveLength(17);
    // An incremental carries the event log (docs/design.md fact 8: the state tables are derived from it).
    expect(contentDigest(latest, "eventlog")).toBe(LATEST_EVENTLOG_DIGEST);
  });

  it("gets a chain from its first 0.3 run (a full), and keeps restoring its old sets; chain --rebuild indexes them all", async () => {
    for (const o of await fixtureObjects()) await t.bucket.store.put(o.key, o.bytes);
    const db = join(t.dir, "app.db");
    appendDemoEvents(db, 30, 7);
    // No chain yet: an incremental has nothing to continue, auto starts the chain with a full.
    await expect(backup({ store: t.bucket.store, databases: [{ path: db, source: "app" }], kind: "incremental", tmpDir: t.dir })).rejects.toMatchObject({ kind: "notFound" });
    const r = await backup({ store: t.bucket.store, databases: [{ path: db, source: "app" }], tmpDir: t.dir });
    expect(r.kind).toBe("full");
    expect((await t.bucket.store.chain()).head?.tail.map((e) => e.id)).toEqual([r.id]);
    // Latest follows the chain; a time before it, the old sets from the listing.
    const latest = await restore({ store: t.bucket.store, to: join(t.dir, "latest.db") });
    expect(latest.restoresTo).toBe(r.id);
    const old = await restore({ store: t.bucket.store, to: join(t.dir, "old.db"), at: new Date("2026-12-01T07:30:00Z") });
    expect(old).toMatchObject({ restoresTo: "20261201T070000Z", chain: [{ id: "20261201T070000Z" }] });
    expect(contentDigest(join(t.dir, "old.db"), "eventlog")).toBe(LATEST_EVENTLOG_DIGEST);
    // The admin rebuilds the index from every manifest: the old full, its incremental, then the new full.
    const { head, leftOut } = await rebuildChain(t.bucket.admin);
    expect(leftOut).toEqual([]);
    expect(head.tail.map((e) => `${e.kind}/${e.id}`)).toEqual(["full/20261201T060000Z", "incremental/20261201T070000Z", `full/${r.id}`]);
    const again = await restore({ store: t.bucket.store, to: join(t.dir, "old-again.db"), at: new Date("2026-12-01T07:30:00Z") });
    expect(again.restoresTo).toBe("20261201T070000Z");
  });
});

// What 0.1.0 backed up: `contentDigest` of the source database when the full backup was taken, and of its
// event log when the incremental was (computed from the source, not from a restore).
const FULL_DIGEST = "039fbe75b7f4fbab9fa2b7e56ae3e844464e3a8defaa44aa0d626ea6f81a776e";
const LATEST_EVENTLOG_DIGEST = "57ed93303fa7ab88eb604a1398c760426a7bcf3268ef9e39a0a18a8fcec95df5";
