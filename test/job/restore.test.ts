import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { appendDemoEvents } from "../../bench/livestore-db.ts";
import { JobError } from "../../job/errors.ts";
import { restore } from "../../job/restore/index.ts";
import { dumpDatabase, fileSha256, startTestBucket, uploadFull, uploadIncremental, type TestBucket } from "./restore-fixtures.ts";

let bucket: TestBucket;
let dir: string;

beforeAll(async () => {
  bucket = await startTestBucket();
});
afterAll(async () => {
  await bucket?.stop();
});
beforeEach(async () => {
  await bucket.clear();
  dir = await mkdtemp(join(tmpdir(), "restore-test-"));
  return () => rm(dir, { recursive: true, force: true });
});

/** A live source database with `events` events, plus a copy of its logical content at that moment. */
function source(name: string, events: number, seed = 1) {
  const path = join(dir, `${name}.src.db`);
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
    await uploadFull(bucket.store, "20260105T060000Z", [src]);
    appendDemoEvents(src.path, 50, 7); // written after the backup: must not appear
    const to = join(dir, "restored.db");

    const result = await restore({ store: bucket.store, to });

    expect(result.restoresTo).toBe("20260105T060000Z");
    expect(result.full).toEqual({ kind: "full", id: "20260105T060000Z", ts: "20260105T060000Z" });
    expect(result.integrity).toBe("ok");
    expect(result.bytes).toBeGreaterThan(0);
    expect(dumpDatabase(to)).toEqual(expected);
    expect((await readdir(dir)).filter((f) => !f.includes(".src.db"))).toEqual(["restored.db"]);
  });

  it("picks the newest complete full and passes over an incomplete newer one", async () => {
    const src = source("app", 100);
    const older = dumpDatabase(src.path);
    await uploadFull(bucket.store, "20260105T060000Z", [src]);
    appendDemoEvents(src.path, 100, 3);
    await uploadFull(bucket.store, "20260105T120000Z", [src], { noManifest: true });
    const to = join(dir, "restored.db");

    const result = await restore({ store: bucket.store, to });

    expect(result.full.ts).toBe("20260105T060000Z");
    expect(result.notes.join("\n")).toContain("passed over full 20260105T120000Z: incomplete");
    expect(dumpDatabase(to)).toEqual(older);
  });

  it("--dry-run prints the plan and changes nothing", async () => {
    const src = source("app", 50);
    await uploadFull(bucket.store, "20260105T060000Z", [src]);
    const to = join(dir, "restored.db");

    const result = await restore({ store: bucket.store, to, dryRun: true });

    expect(result).toMatchObject({ dryRun: true, restoresTo: "20260105T060000Z", bytes: 0, integrity: "not run" });
    expect(result.targets).toMatchObject([{ source: "app", path: to, existed: false }]);
    expect((await readdir(dir)).filter((f) => !f.startsWith("app.src"))).toEqual([]);
  });

  it("refuses an existing target without --force, before downloading anything", async () => {
    const src = source("app", 50);
    await uploadFull(bucket.store, "20260105T060000Z", [src]);
    const to = join(dir, "live.db");
    await writeFile(to, "the live database");
    const before = await fileSha256(to);

    const e = await rejection(restore({ store: bucket.store, to }));

    expect(e.kind).toBe("targetExists");
    expect(e.message).toContain("--force");
    expect(await fileSha256(to)).toBe(before);
  });

  it("refuses a target that only has a stale -wal without --force", async () => {
    const src = source("app", 50);
    await uploadFull(bucket.store, "20260105T060000Z", [src]);
    const to = join(dir, "live.db");
    await writeFile(`${to}-wal`, "stale wal");

    const e = await rejection(restore({ store: bucket.store, to }));

    expect(e.kind).toBe("targetExists");
    expect(e.message).toContain("live.db-wal");
  });

  it("with --force replaces the target and removes its stale -wal and -shm", async () => {
    const src = source("app", 80);
    const expected = dumpDatabase(src.path);
    await uploadFull(bucket.store, "20260105T060000Z", [src]);
    const to = join(dir, "live.db");
    appendDemoEvents(to, 10, 99);
    const live = new DatabaseSync(to);
    live.exec("PRAGMA wal_autocheckpoint = 0; INSERT INTO documents VALUES ('x', 'x', 'x', 'x')");
    live.close(); // closing checkpoints; re-create sidecars to prove they are removed
    await writeFile(`${to}-wal`, "stale wal");
    await writeFile(`${to}-shm`, "stale shm");

    const result = await restore({ store: bucket.store, to, force: true });

    expect(result.targets[0]!.existed).toBe(true);
    expect(dumpDatabase(to)).toEqual(expected);
    expect((await readdir(dir)).filter((f) => f.startsWith("live"))).toEqual(["live.db"]);
  });

  it("restores every database of a multi-database backup into a directory, or one with --source", async () => {
    const a = source("eventlog@6", 60, 1);
    const b = source("state1234@6", 40, 2);
    const dumpA = dumpDatabase(a.path);
    const dumpB = dumpDatabase(b.path);
    await uploadFull(bucket.store, "20260105T060000Z", [a, b]);
    const out = join(dir, "data");

    const all = await restore({ store: bucket.store, to: out });
    expect(all.targets.map((t) => t.path)).toEqual([join(out, "eventlog@6.db"), join(out, "state1234@6.db")]);
    expect(dumpDatabase(join(out, "eventlog@6.db"))).toEqual(dumpA);
    expect(dumpDatabase(join(out, "state1234@6.db"))).toEqual(dumpB);

    const one = join(dir, "one.db");
    await restore({ store: bucket.store, to: one, source: "state1234@6" });
    expect(dumpDatabase(one)).toEqual(dumpB);

    const e = await rejection(restore({ store: bucket.store, to: join(dir, "x.db"), source: "nope" }));
    expect(e.kind).toBe("notFound");
    expect(e.message).toContain("eventlog@6, state1234@6");
  });
});

describe("point in time", () => {
  it("restores exactly the rows committed up to the last incremental at or before --at", async () => {
    const src = source("eventlog@6", 100);
    const full = await uploadFull(bucket.store, "20260105T060000Z", [src]);
    appendDemoEvents(src.path, 40, 2);
    const inc1 = await uploadIncremental(bucket.store, "20260105T070000Z", full, [src]);
    const atInc1 = dumpDatabase(src.path).rows.eventlog;
    appendDemoEvents(src.path, 30, 3);
    const inc2 = await uploadIncremental(bucket.store, "20260105T080000Z", inc1, [src]);
    const atInc2 = dumpDatabase(src.path).rows.eventlog;
    appendDemoEvents(src.path, 20, 4);
    await uploadIncremental(bucket.store, "20260105T090000Z", inc2, [src]);

    const to = join(dir, "pitr.db");
    const between = await restore({ store: bucket.store, to, at: new Date("2026-01-05T07:30:00Z") });
    expect(between.restoresTo).toBe("20260105T070000Z");
    expect(between.chain.map((c) => c.ts)).toEqual(["20260105T070000Z"]);
    expect(between.rows).toEqual({ "eventlog@6/eventlog": 40 });
    expect(dumpDatabase(to).rows.eventlog).toEqual(atInc1);

    const exact = await restore({ store: bucket.store, to, at: new Date("2026-01-05T08:00:00Z"), force: true });
    expect(exact.restoresTo).toBe("20260105T080000Z");
    expect(dumpDatabase(to).rows.eventlog).toEqual(atInc2);

    const latest = await restore({ store: bucket.store, to, force: true });
    expect(latest.chain).toHaveLength(3);
    expect(dumpDatabase(to).rows.eventlog).toEqual(dumpDatabase(src.path).rows.eventlog);
    expect(new DatabaseSync(to).prepare("SELECT max(seqNumGlobal) AS m FROM eventlog").get()).toEqual({ m: 190 });
  });
});
