import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { describe, expect, it } from "vitest";
import { appendDemoEvents } from "../../bench/livestore-db.ts";
import { JobError } from "../../job/errors.ts";
import { restore } from "../../job/restore/index.ts";
import { useTestBucket } from "./bucket.ts";
import { dumpDatabase, fileSha256, uploadFull, uploadIncremental } from "./restore-fixtures.ts";

const t = useTestBucket("restore-test-");

/** A live source database with `events` events, plus a copy of its logical content at that moment. */
function source(name: string, events: number, seed = 1) {
  const path = join(t.dir, `${name}.src.db`);
  appendDemoEvents(path, events, seed);
  return { source: name, path };
}

async function rejection(p: Promise<unknown>): Promise<JobError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(JobError);
  return e as JobError;
}

describe("restore latest", () => {
  it("round-trips: the restored database has the source's schema and rows at the backup's time", async () => {
    const src = source("eventlog@6", 300);
    const expected = dumpDatabase(src.path);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src]);
    appendDemoEvents(src.path, 50, 7); // written after the backup: must not appear
    const to = join(t.dir, "restored.db");

    const result = await restore({ store: t.bucket.store, to });

    expect(result.restoresTo).toBe("20260105T060000Z");
    expect(result.full).toEqual({ kind: "full", id: "20260105T060000Z", ts: "20260105T060000Z" });
    expect(result.integrity).toBe("ok");
    expect(result.bytes).toBeGreaterThan(0);
    expect(dumpDatabase(to)).toEqual(expected);
    expect((await readdir(t.dir)).filter((f) => !f.includes(".src.db"))).toEqual(["restored.db"]);
  });

  it("picks the newest complete full and passes over an incomplete newer one", async () => {
    const src = source("app", 100);
    const older = dumpDatabase(src.path);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src]);
    appendDemoEvents(src.path, 100, 3);
    await uploadFull(t.bucket.store, "20260105T120000Z", [src], { noManifest: true });
    const to = join(t.dir, "restored.db");

    const result = await restore({ store: t.bucket.store, to });

    expect(result.full.ts).toBe("20260105T060000Z");
    expect(result.notes.join("\n")).toContain("passed over full 20260105T120000Z: incomplete");
    expect(dumpDatabase(to)).toEqual(older);
  });

  it("--dry-run prints the plan and changes nothing", async () => {
    const src = source("app", 50);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src]);
    const to = join(t.dir, "restored.db");

    const result = await restore({ store: t.bucket.store, to, dryRun: true });

    expect(result).toMatchObject({ dryRun: true, restoresTo: "20260105T060000Z", bytes: 0, integrity: "not run" });
    expect(result.targets).toMatchObject([{ source: "app", path: to, existed: false }]);
    expect((await readdir(t.dir)).filter((f) => !f.startsWith("app.src"))).toEqual([]);
  });

  it("refuses an existing target without --force, before downloading anything", async () => {
    const src = source("app", 50);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src]);
    const to = join(t.dir, "live.db");
    await writeFile(to, "the live database");
    const before = await fileSha256(to);

    const e = await rejection(restore({ store: t.bucket.store, to }));

    expect(e.kind).toBe("targetExists");
    expect(e.message).toContain("--force");
    expect(await fileSha256(to)).toBe(before);
  });

  it("refuses a target that only has a stale -wal without --force", async () => {
    const src = source("app", 50);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src]);
    const to = join(t.dir, "live.db");
    await writeFile(`${to}-wal`, "stale wal");

    const e = await rejection(restore({ store: t.bucket.store, to }));

    expect(e.kind).toBe("targetExists");
    expect(e.message).toContain("live.db-wal");
  });

  it("with --force replaces the target and removes its stale -wal and -shm", async () => {
    const src = source("app", 80);
    const expected = dumpDatabase(src.path);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src]);
    const to = join(t.dir, "live.db");
    appendDemoEvents(to, 10, 99);
    const live = new DatabaseSync(to);
    live.exec("PRAGMA wal_autocheckpoint = 0; INSERT INTO __livestore_sync_status VALUES (99, 'x')");
    live.close(); // closing checkpoints; re-create sidecars to prove they are removed
    await writeFile(`${to}-wal`, "stale wal");
    await writeFile(`${to}-shm`, "stale shm");

    const result = await restore({ store: t.bucket.store, to, force: true });

    expect(result.targets[0]!.existed).toBe(true);
    expect(dumpDatabase(to)).toEqual(expected);
    expect((await readdir(t.dir)).filter((f) => f.startsWith("live"))).toEqual(["live.db"]);
  });

  it("restores every database of a multi-database backup into a directory, or one with --source", async () => {
    const a = source("eventlog@6", 60, 1);
    const b = source("state1234@6", 40, 2);
    const dumpA = dumpDatabase(a.path);
    const dumpB = dumpDatabase(b.path);
    await uploadFull(t.bucket.store, "20260105T060000Z", [a, b]);
    const out = join(t.dir, "data");

    const all = await restore({ store: t.bucket.store, to: out });
    expect(all.targets.map((t) => t.path)).toEqual([join(out, "eventlog@6.db"), join(out, "state1234@6.db")]);
    expect(dumpDatabase(join(out, "eventlog@6.db"))).toEqual(dumpA);
    expect(dumpDatabase(join(out, "state1234@6.db"))).toEqual(dumpB);

    const one = join(t.dir, "one.db");
    await restore({ store: t.bucket.store, to: one, source: "state1234@6" });
    expect(dumpDatabase(one)).toEqual(dumpB);

    const e = await rejection(restore({ store: t.bucket.store, to: join(t.dir, "x.db"), source: "nope" }));
    expect(e.kind).toBe("notFound");
    expect(e.message).toContain("eventlog@6, state1234@6");
  });
});

describe("a chain written by versions before and after 0.3", () => {
  it("restores to the source: a full checked by its sha256, incrementals by frame checksums and by sha256 in turn", async () => {
    const src = source("app", 100);
    const full = await uploadFull(t.bucket.store, "20260105T000000Z", [src], { legacy: true });
    appendDemoEvents(src.path, 20, 2);
    const inc1 = await uploadIncremental(t.bucket.store, "20260105T010000Z", full, [src]);
    appendDemoEvents(src.path, 20, 3);
    const inc2 = await uploadIncremental(t.bucket.store, "20260105T020000Z", inc1, [src], { legacy: true });
    expect([full, inc1, inc2].map((m) => [m.files[0]!.contentChecksum, m.files[0]!.uncompressedSha256 === undefined])).toEqual([
      [undefined, false],
      ["zstd-checksum", true],
      [undefined, false],
    ]);
    const to = join(t.dir, "mixed.db");

    const result = await restore({ store: t.bucket.store, to });

    expect(result.chain.map((c) => c.id)).toEqual([inc1.id, inc2.id]);
    expect(dumpDatabase(to)).toEqual(dumpDatabase(src.path));
  });
});

describe("point in time", () => {
  it("restores exactly the rows committed up to the last incremental at or before --at", async () => {
    const src = source("eventlog@6", 100);
    const full = await uploadFull(t.bucket.store, "20260105T060000Z", [src]);
    appendDemoEvents(src.path, 40, 2);
    const inc1 = await uploadIncremental(t.bucket.store, "20260105T070000Z", full, [src]);
    const atInc1 = dumpDatabase(src.path).rows.eventlog;
    appendDemoEvents(src.path, 30, 3);
    const inc2 = await uploadIncremental(t.bucket.store, "20260105T080000Z", inc1, [src]);
    const atInc2 = dumpDatabase(src.path).rows.eventlog;
    appendDemoEvents(src.path, 20, 4);
    await uploadIncremental(t.bucket.store, "20260105T090000Z", inc2, [src]);

    const to = join(t.dir, "pitr.db");
    const between = await restore({ store: t.bucket.store, to, at: new Date("2026-01-05T07:30:00Z") });
    expect(between.restoresTo).toBe("20260105T070000Z");
    expect(between.chain.map((c) => c.ts)).toEqual(["20260105T070000Z"]);
    expect(between.rows).toEqual({ "eventlog@6/eventlog": 40 });
    expect(dumpDatabase(to).rows.eventlog).toEqual(atInc1);

    const exact = await restore({ store: t.bucket.store, to, at: new Date("2026-01-05T08:00:00Z"), force: true });
    expect(exact.restoresTo).toBe("20260105T080000Z");
    expect(dumpDatabase(to).rows.eventlog).toEqual(atInc2);

    const latest = await restore({ store: t.bucket.store, to, force: true });
    expect(latest.chain).toHaveLength(3);
    expect(dumpDatabase(to).rows.eventlog).toEqual(dumpDatabase(src.path).rows.eventlog);
    expect(new DatabaseSync(to).prepare("SELECT max(seqNumGlobal) AS m FROM eventlog").get()).toEqual({ m: 190 });
  });
});
