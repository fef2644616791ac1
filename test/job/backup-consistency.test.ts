import { spawn, type ChildProcess } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, describe, expect, it } from "vitest";
import { backup } from "../../job/backup.ts";
import { addRandomBlob, decodeChanges, eventCount, holdParts, openBytes, verifySet, writeLiveStoreDb } from "./backup-fixtures.ts";
import { useTestBucket } from "./bucket.ts";

/**
 * A backup taken while another process writes continuously (WAL) is a committed state: the snapshot passes
 * the integrity check and its eventlog is exactly 1..N with no hole; each transaction writes an event and
 * its document together, so a torn snapshot would show a mismatch. Incrementals taken under the same writer
 * chain without a gap or a duplicate.
 */

const t = useTestBucket("backup-consistency-");
let writer: ChildProcess | undefined;

afterAll(async () => {
  writer?.kill("SIGKILL");
});

const WRITER = `
import { DatabaseSync } from "node:sqlite";
const db = new DatabaseSync(process.argv[2], { timeout: 10000 });
db.exec("PRAGMA journal_mode = WAL");
const ev = db.prepare("INSERT INTO eventlog (seqNumGlobal, seqNumClient, parentSeqNumGlobal, name, argsJson, clientId, sessionId) VALUES (?, 0, ?, 'todoCreated-v1', ?, 'w', 's')");
const doc = db.prepare("INSERT OR REPLACE INTO documents (id, title, body, updatedAt) VALUES ('counter', 'c', ?, ?)");
let n = Number(db.prepare("SELECT coalesce(max(seqNumGlobal), 0) AS m FROM eventlog").get().m);
process.send?.("ready");
for (;;) {
  n++;
  db.exec("BEGIN IMMEDIATE");
  ev.run(n, n - 1, JSON.stringify({ n, pad: "p".repeat(200) }));
  if (process.argv[3] !== "events-only") doc.run("# count " + n, n);
  db.exec("COMMIT");
  if (n % 50 === 0) await new Promise((r) => setImmediate(r));
}
`;

async function startWriter(db: string, mode: "events-and-documents" | "events-only" = "events-and-documents"): Promise<ChildProcess> {
  const script = join(t.dir, "writer.mjs");
  await writeFile(script, WRITER);
  const child = spawn(process.execPath, [script, db, mode], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  await new Promise<void>((resolve, reject) => {
    child.once("message", () => resolve());
    child.once("exit", (code) => reject(new Error(`writer exited ${code}`)));
  });
  return child;
}

describe("backups under a continuous writer", () => {
  it("a full backup is consistent: integrity ok, eventlog 1..N without holes, and the document matches event N", async () => {
    const db = join(t.dir, "eventlog@6.db");
    writeLiveStoreDb(db, { events: 20_000, argsBytes: 300 });
    writer = await startWriter(db);
    // Let the writer run before and during the backups.
    while (eventCount(db) < 20_500) await new Promise((r) => setTimeout(r, 20));
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await backup({ store: t.bucket.store, databases: [{ path: db }], kind: "full", tmpDir: join(t.dir, "tmp"), integrity: "full", promote: false });
      ids.push(r.id);
    }
    const before = eventCount(db);
    writer.kill("SIGKILL");
    writer = undefined;
    for (const id of ids) {
      const { manifest, bytes } = await verifySet(t.bucket.store, "full", id);
      const snap = openBytes(t.dir, `${id}.db`, bytes.get("eventlog@6.db.zst")!);
      expect(snap.prepare("PRAGMA integrity_check").get()).toEqual({ integrity_check: "ok" });
      const { n, lo, hi } = snap.prepare("SELECT count(*) AS n, min(seqNumGlobal) AS lo, max(seqNumGlobal) AS hi FROM eventlog").get() as { n: number; lo: number; hi: number };
      expect([lo, hi]).toEqual([1, n]);
      expect(n).toBeGreaterThan(20_000);
      const doc = snap.prepare("SELECT body, updatedAt FROM documents WHERE id = 'counter'").get() as { body: string; updatedAt: number };
      expect(doc).toEqual({ body: `# count ${n}`, updatedAt: n });
      expect(manifest.to[0]!.value).toEqual([n, 0]);
      expect(manifest.databases[0]!.tables.eventlog).toBe(n);
      snap.close();
    }
    // The writer kept writing through the backups (the snapshot never blocked or restarted it).
    expect(before).toBeGreaterThan(20_500);
  });

  it("incrementals taken under the writer chain without gaps or duplicates", async () => {
    const db = join(t.dir, "eventlog@6.db");
    writeLiveStoreDb(db, { events: 2_000 });
    writer = await startWriter(db, "events-only");
    const tmp = join(t.dir, "tmp");
    const full = await backup({ store: t.bucket.store, databases: [{ path: db }], kind: "full", tmpDir: tmp, promote: false });
    const incs = [];
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 200));
      incs.push(await backup({ store: t.bucket.store, databases: [{ path: db }], kind: "incremental", tmpDir: tmp }));
    }
    writer.kill("SIGKILL");
    writer = undefined;
    let expected = (full.manifest.to[0]!.value as number[])[0]!;
    for (const inc of incs) {
      const rows = decodeChanges((await verifySet(t.bucket.store, "incremental", inc.id)).bytes.get("changes.ndjson.zst")!);
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.map((r) => r.row.seqNumGlobal)).toEqual(Array.from({ length: rows.length }, (_, i) => expected + 1 + i));
      expected += rows.length;
      expect(inc.manifest.to[0]!.value).toEqual([expected, 0]);
    }
  });
});

describe("the snapshot is let go before the upload ends", () => {
  it("once a full backup's bytes are compressed, the app can checkpoint its log though parts are still held", async () => {
    const db = join(t.dir, "held.db");
    writeLiveStoreDb(db, { events: 2000 });
    addRandomBlob(db, 16 * 1024 * 1024); // incompressible: 4 parts of 5 MiB, 2 in flight at most
    const app = new DatabaseSync(db);
    app.exec("PRAGMA journal_mode = WAL");
    const insert = app.prepare(
      "INSERT INTO eventlog (seqNumGlobal, seqNumClient, parentSeqNumGlobal, name, argsJson, clientId, sessionId) VALUES (?, 0, ?, 'todoCreated-v1', '{}', 'app', 's')",
    );
    // The Worker's part uploads wait until the test lets them go.
    const held = holdParts(t.bucket.store);
    let settled = false;
    const run = backup({ store: held.store, databases: [{ path: db }], kind: "full", tmpDir: join(t.dir, "tmp"), partBytes: 5 * 1024 * 1024, promote: false }).finally(() => {
      settled = true;
    });
    try {
      // The first part asked for: the snapshot is pinned and being compressed.
      while (held.partsAsked() === 0 && !settled) await new Promise((r) => setTimeout(r, 10));
      let n = 2000;
      let checkpointed = false;
      for (const deadline = Date.now() + 20_000; !checkpointed && Date.now() < deadline; ) {
        n++;
        insert.run(n, n - 1);
        const r = app.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get() as { busy: number };
        checkpointed = r.busy === 0;
        if (!checkpointed) await new Promise((r) => setTimeout(r, 20));
      }
      expect(checkpointed).toBe(true);
      expect(settled).toBe(false); // no part has been sent yet
    } finally {
      held.open();
    }
    const r = await run;
    const { manifest, bytes } = await verifySet(t.bucket.store, "full", r.id);
    const snap = openBytes(t.dir, `${r.id}.db`, bytes.get("held.db.zst")!);
    const { count } = snap.prepare("SELECT count(*) AS count FROM eventlog").get() as { count: number };
    snap.close();
    // The snapshot is the state it pinned: what the app wrote afterwards is not in it.
    expect(count).toBe(manifest.databases[0]!.tables.eventlog);
    expect(count).toBeLessThan(eventCount(db));
    app.close();
  });
});
