import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { appendDemoEvents } from "../../bench/livestore-db.ts";
import { PREFIXES, dayOfTimestamp } from "../../core/index.ts";
import { backup } from "../../job/backup.ts";
import { JobError } from "../../job/errors.ts";
import { restore, verify } from "../../job/restore/index.ts";
import { useTestBucket } from "./bucket.ts";
import { dumpDatabase } from "./restore-fixtures.ts";

/**
 * Backup then restore, both real: the job's `backup()` writes full and incremental sets through the local
 * Worker, and `restore()` brings back exactly what was committed at each backup's time.
 */
const t = useTestBucket("restore-backup-");

const at = (iso: string) => () => new Date(iso);

function take(path: string, kind: "full" | "incremental", source = "eventlog@6", documents?: string) {
  return backup({
    store: t.bucket.store,
    databases: [{ path, source }],
    kind,
    tmpDir: join(t.dir, "work"),
    lockFile: false,
    ...(documents ? { documents: { dir: documents } } : {}),
  });
}

describe("backup → restore", () => {
  it("round-trips a full backup: same schema, same rows as the source at the backup's time", async () => {
    const src = join(t.dir, "app.db");
    appendDemoEvents(src, 500, 1);
    const expected = dumpDatabase(src);
    const b = await take(src, "full");
    appendDemoEvents(src, 100, 2);
    const to = join(t.dir, "restored.db");

    const r = await restore({ store: t.bucket.store, to });

    expect(r.full.ts).toBe(b.id);
    expect(r.restoresTo).toBe(b.id);
    // The snapshot keeps the source's WAL mode; the restore must not leave a -wal or -shm beside it.
    expect((await readdir(t.dir)).filter((f) => f.startsWith("restored"))).toEqual(["restored.db"]);
    expect(dumpDatabase(to)).toEqual(expected);
  });

  it("restores a time between two incrementals to exactly the events committed up to the earlier one", async () => {
    const src = join(t.dir, "app.db");
    appendDemoEvents(src, 200, 1);
    await take(src, "full");
    appendDemoEvents(src, 50, 2);
    const i1 = await take(src, "incremental");
    const atI1 = dumpDatabase(src).rows.eventlog;
    appendDemoEvents(src, 30, 3);
    const i2 = await take(src, "incremental");
    const atI2 = dumpDatabase(src).rows.eventlog;
    appendDemoEvents(src, 10, 4); // never backed up
    const to = join(t.dir, "pitr.db");

    // Just before the second incremental's data was read: the first one.
    const between = await restore({ store: t.bucket.store, to, at: new Date(Date.parse(i2.manifest.capturedAt!) - 1) });
    expect(between.restoresTo).toBe(i1.id);
    expect(between.rows).toEqual({ "eventlog@6/eventlog": 50 });
    expect(dumpDatabase(to).rows.eventlog).toEqual(atI1);

    const latest = await restore({ store: t.bucket.store, to, force: true });
    expect(latest.restoresTo).toBe(i2.id);
    expect(dumpDatabase(to).rows.eventlog).toEqual(atI2);
  });

  it("falls back to the daily copy when the full backup's own objects have expired", async () => {
    const src = join(t.dir, "app.db");
    appendDemoEvents(src, 120, 1);
    const expected = dumpDatabase(src);
    const b = await take(src, "full");
    const day = dayOfTimestamp(b.id);
    expect(b.promoted?.day).toBe(day);
    for (const o of await t.bucket.admin.listAll(`${PREFIXES.full}${b.id}/`)) await t.bucket.admin.delete(o.key);
    const to = join(t.dir, "from-daily.db");

    const r = await restore({ store: t.bucket.store, to });

    expect(r.full).toEqual({ kind: "daily", id: day, ts: b.id });
    expect(dumpDatabase(to)).toEqual(expected);
  });

  it("a damaged daily manifest blocks only the restores that need it", async () => {
    const src = join(t.dir, "app.db");
    appendDemoEvents(src, 120, 1);
    const expected = dumpDatabase(src);
    const b = await take(src, "full");
    const dailyManifest = `${PREFIXES.daily}${dayOfTimestamp(b.id)}/metadata.json`;
    await t.bucket.admin.delete(dailyManifest);
    await t.bucket.store.put(dailyManifest, '{"not": "a manifest"');
    const to = join(t.dir, "restored.db");

    // The own full is there: the damaged daily copy is not needed.
    const r = await restore({ store: t.bucket.store, to });
    expect(r.full).toEqual({ kind: "full", id: b.id, ts: b.id });
    expect(dumpDatabase(to)).toEqual(expected);

    // Once the own full is gone, the daily copy is needed: the error names its damaged manifest.
    for (const o of await t.bucket.admin.listAll(`${PREFIXES.full}${b.id}/`)) await t.bucket.admin.delete(o.key);
    const e = (await restore({ store: t.bucket.store, to: join(t.dir, "other.db") }).catch((err: unknown) => err)) as JobError;
    expect(e).toBeInstanceOf(JobError);
    expect(e.kind).toBe("integrity");
    expect(e.message).toContain(dailyManifest);
  });

  it("the drill passes on real backups and is recorded", async () => {
    const src = join(t.dir, "app.db");
    appendDemoEvents(src, 100, 1);
    await take(src, "full");
    appendDemoEvents(src, 10, 2);
    const i1 = await take(src, "incremental");

    const d = await verify({ store: t.bucket.store, now: at("2026-02-01T00:00:00Z") });

    expect(d.record).toMatchObject({ ok: true, restoresTo: i1.id, chain: [i1.id], integrity: "ok", rows: { "eventlog@6/eventlog": 10 } });
    expect(d.key).toBe("backups/drills/20260201T000000Z.json");
  });

  it("--documents-to extracts the documents beside the database, and refuses a non-empty directory without --force", async () => {
    const src = join(t.dir, "app.db");
    appendDemoEvents(src, 50, 1);
    const docs = join(t.dir, "docs");
    await mkdir(join(docs, "notes"), { recursive: true });
    await writeFile(join(docs, "readme.md"), "# Hello\n");
    await writeFile(join(docs, "notes", "a.md"), "- one\n- two\n");
    await take(src, "full", "app", docs);
    const out = join(t.dir, "restored-docs");

    const r = await restore({ store: t.bucket.store, to: join(t.dir, "restored.db"), documentsTo: out });

    expect(r.documents).toEqual({ path: out, files: 2, existed: false });
    expect(await readFile(join(out, "readme.md"), "utf8")).toBe("# Hello\n");
    expect(await readFile(join(out, "notes", "a.md"), "utf8")).toBe("- one\n- two\n");
    await expect(restore({ store: t.bucket.store, to: join(t.dir, "again.db"), documentsTo: out })).rejects.toMatchObject({ kind: "targetExists" });
    expect((await readdir(t.dir)).filter((f) => f.startsWith("again") || f.includes(".restore-"))).toEqual([]);
    await writeFile(join(out, "stale.md"), "old");
    const forced = await restore({ store: t.bucket.store, to: join(t.dir, "again.db"), documentsTo: out, force: true });
    expect(forced.documents?.existed).toBe(true);
    expect((await readdir(out)).sort()).toEqual(["notes", "readme.md"]);
    expect((await readdir(t.dir)).filter((f) => f.includes(".restore-") || f.includes("pre-restore"))).toEqual([]);
  });
});
