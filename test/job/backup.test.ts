import { readFileSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import tar from "tar-stream";
import { describe, expect, it } from "vitest";
import { compareKeys, fileKey, formatTimestamp, manifestKey, parseManifest, parseTimestamp } from "../../core/index.ts";
import { backup } from "../../job/backup.ts";
import { main } from "../../job/cli.ts";
import { EXIT } from "../../job/errors.ts";
import { HttpStore } from "../../job/store/http-store.ts";
import { addRandomBlob, collector, decodeChanges, download, openBytes, startFaultProxy, verifyAllComplete, verifySet, writeLiveStoreDb } from "./backup-fixtures.ts";
import { useTestBucket } from "./bucket.ts";

const t = useTestBucket("backup-test-");

function cli(args: string[], env: Record<string, string> = {}) {
  const stdout = collector();
  const stderr = collector();
  return main(args, { stdout, stderr, env: { R2_WORKER_URL: t.bucket.url, SERVER_BYPASS_TOKEN: t.bucket.token, ...env } }).then((code) => ({
    code,
    stdout: stdout.text(),
    stderr: stderr.text(),
  }));
}

async function untar(raw: Buffer): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: unknown) => {
        chunks.push(c as Buffer);
      });
      stream.on("end", () => {
        files.set(header.name, Buffer.concat(chunks).toString("utf8"));
        next();
      });
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  extract.end(raw);
  await done;
  return files;
}

describe("r2backup run --kind full", () => {
  it("stores a checked snapshot, documents and a manifest whose hashes match, then promotes it to daily", async () => {
    const db = join(t.dir, "eventlog@6.db");
    writeLiveStoreDb(db, { events: 500, docs: 20 });
    const docs = join(t.dir, "docs");
    await mkdir(join(docs, "notes"), { recursive: true });
    await writeFile(join(docs, "readme.md"), "# Readme\n");
    await writeFile(join(docs, "notes", "a.md"), "# A\n\ntext\n");

    const r = await cli([
      "run",
      "--db",
      db,
      "--kind",
      "full",
      "--documents",
      docs,
      "--documents-query",
      "SELECT id, body FROM documents ORDER BY id",
      "--tmp-dir",
      join(t.dir, "tmp"),
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { id: string; manifest: { files: { name: string }[] } };
    const { manifest, bytes } = await verifySet(t.bucket.store, "full", result.id);
    expect(manifest.files.map((f) => f.name).sort()).toEqual(["documents.tar.zst", "eventlog@6.db.zst"]);
    expect(manifest.databases[0]).toMatchObject({ source: "eventlog@6", integrity: "ok", tables: { eventlog: 500, documents: 20 } });
    expect(manifest.to).toEqual([
      { source: "eventlog@6", table: "eventlog", columns: ["seqNumGlobal", "seqNumClient"], value: [500, 0], count: 500, rowSha256: expect.stringMatching(/^[0-9a-f]{64}$/) },
    ]);

    const restored = openBytes(t.dir, "restored.db", bytes.get("eventlog@6.db.zst")!);
    expect(restored.prepare("PRAGMA integrity_check").get()).toEqual({ integrity_check: "ok" });
    expect(restored.prepare("SELECT count(*) AS n, max(seqNumGlobal) AS m FROM eventlog").get()).toEqual({ n: 500, m: 500 });
    restored.close();

    const files = await untar(bytes.get("documents.tar.zst")!);
    expect(files.get("readme.md")).toBe("# Readme\n");
    expect(files.get("notes/a.md")).toBe("# A\n\ntext\n");
    expect(files.get("query/doc-1.md")).toBe("# Doc 1\n\nSome *markdown* for 1.\n");
    expect([...files.keys()].filter((k) => k.startsWith("query/"))).toHaveLength(20);

    // Promoted: the day's daily copy is the same bytes, marked promotedFrom.
    const day = `${result.id.slice(0, 4)}-${result.id.slice(4, 6)}-${result.id.slice(6, 8)}`;
    const daily = await verifySet(t.bucket.store, "daily", day);
    expect(daily.manifest.promotedFrom).toBe(result.id);
    expect(daily.manifest.files).toEqual(manifest.files);
    const latest = JSON.parse((await download(t.bucket.store, "backups/state/latest.json")).toString()) as { id: string };
    expect(latest.id).toBe(result.id);
    // Temp files are gone.
    expect((await readdir(join(t.dir, "tmp"))).filter((f) => f.startsWith("r2backup-work-"))).toEqual([]);
  });

  it("writes metadata.json after every data object, and uses multipart with at most 2 parts in flight", async () => {
    const db = join(t.dir, "big.db");
    writeLiveStoreDb(db, { events: 100 });
    addRandomBlob(db, 24 * 1024 * 1024);
    const proxy = await startFaultProxy(t.bucket.url);
    try {
      const store = new HttpStore({ url: proxy.url, token: t.bucket.token, attempts: 3, backoffMs: 10 });
      const result = await backup({ store, databases: [{ path: db }], kind: "full", tmpDir: join(t.dir, "tmp"), partBytes: 5 * 1024 * 1024 });
      const writes = proxy.requests.filter((q) => q.method === "PUT" || q.method === "POST").map((q) => decodeURIComponent(q.url.split("?")[0]!));
      const setWrites = writes.filter((u) => u.includes(`/full/${result.id}/`));
      // The manifest goes with the commit (POST /api/chain), after every object of the set.
      const commit = writes.lastIndexOf("/api/chain");
      expect(commit).toBeGreaterThan(writes.lastIndexOf(setWrites.at(-1)!));
      expect((await t.bucket.store.chain()).head?.tail.at(-1)?.id).toBe(result.id);
      await t.bucket.store.head(manifestKey("full", result.id)).then((o) => expect(o).toBeDefined());
      expect(setWrites.filter((u) => u.endsWith("big.db.zst")).length).toBeGreaterThanOrEqual(6); // create + >= 4 parts + complete
      expect(proxy.maxConcurrent(/^PUT .*big\.db\.zst$/)).toBeLessThanOrEqual(2);
      expect(proxy.maxConcurrent(/^PUT .*big\.db\.zst$/)).toBe(2);
      // Daily copy after the full manifest, its own manifest last.
      const dailyWrites = writes.filter((u) => u.includes("/daily/"));
      expect(writes.indexOf(dailyWrites[0]!)).toBeGreaterThan(commit);
      expect(dailyWrites.at(-1)).toMatch(/\/metadata\.json$/);
      await verifySet(t.bucket.store, "full", result.id);
      await verifySet(t.bucket.store, "daily", result.promoted!.day);
    } finally {
      await proxy.close();
    }
  });

  it("backs up every *.db of a data directory under unique source names", async () => {
    const data = join(t.dir, "data");
    await mkdir(join(data, "store1", "store1"), { recursive: true });
    writeLiveStoreDb(join(data, "store1", "store1", "eventlog@6.db"), { events: 10 });
    const state = new DatabaseSync(join(data, "store1", "store1", "state4f2a@6.db"));
    state.exec("CREATE TABLE todos (id TEXT PRIMARY KEY, text TEXT); INSERT INTO todos VALUES ('a', 'x');");
    state.close();
    const r = await cli(["run", "--data-dir", data, "--kind", "full", "--tmp-dir", join(t.dir, "tmp"), "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const { manifest } = await verifySet(t.bucket.store, "full", (JSON.parse(r.stdout) as { id: string }).id);
    expect(manifest.databases.map((d) => d.source).sort()).toEqual(["store1.store1.eventlog@6", "store1.store1.state4f2a@6"]);
    expect(manifest.to.map((w) => w.source)).toEqual(["store1.store1.eventlog@6"]);
  });
});

describe("incremental chain", () => {
  it("carries exactly the rows past each watermark, chained full -> inc -> inc, and auto picks incremental", async () => {
    const db = join(t.dir, "eventlog@6.db");
    const tmp = join(t.dir, "tmp");
    writeLiveStoreDb(db, { events: 300 });
    const full = await backup({ store: t.bucket.store, databases: [{ path: db }], kind: "full", tmpDir: tmp, promote: false });
    writeLiveStoreDb(db, { from: 301, events: 50 });
    // A pending client event: same global sequence number, a later client one.
    const live = new DatabaseSync(db);
    live.prepare("INSERT INTO eventlog (seqNumGlobal, seqNumClient, name, argsJson, clientId, sessionId) VALUES (350, 1, 'x', '{}', 'c', 's')").run();
    live.close();
    const inc1 = await backup({ store: t.bucket.store, databases: [{ path: db }], kind: "auto", tmpDir: tmp });
    writeLiveStoreDb(db, { from: 351, events: 7 });
    const inc2 = await backup({ store: t.bucket.store, databases: [{ path: db }], kind: "incremental", tmpDir: tmp });
    const inc3 = await backup({ store: t.bucket.store, databases: [{ path: db }], kind: "incremental", tmpDir: tmp });

    expect(inc1.kind).toBe("incremental");
    expect([full.id < inc1.id, inc1.id < inc2.id, inc2.id < inc3.id]).toEqual([true, true, true]);
    const sets = [inc1, inc2, inc3].map((r) => r.manifest);
    expect(sets.map((m) => [m.base, m.previous])).toEqual([
      [full.id, full.id],
      [full.id, inc1.id],
      [full.id, inc2.id],
    ]);
    expect(sets.map((m) => m.from[0]?.value)).toEqual([
      [300, 0],
      [350, 1],
      [357, 0],
    ]);
    expect(sets.map((m) => m.to[0]?.value)).toEqual([
      [350, 1],
      [357, 0],
      [357, 0],
    ]);
    expect(sets.map((m) => m.changes)).toEqual([{ "eventlog@6/eventlog": 51 }, { "eventlog@6/eventlog": 7 }, { "eventlog@6/eventlog": 0 }]);

    const rowsOf = async (id: string) => decodeChanges((await verifySet(t.bucket.store, "incremental", id)).bytes.get("changes.ndjson.zst")!);
    const r1 = await rowsOf(inc1.id);
    const r2 = await rowsOf(inc2.id);
    expect(r1.map((c) => [c.row.seqNumGlobal, c.row.seqNumClient])).toEqual([...Array.from({ length: 50 }, (_, i) => [301 + i, 0]), [350, 1]]);
    expect(r2.map((c) => c.row.seqNumGlobal)).toEqual([351, 352, 353, 354, 355, 356, 357]);
    expect(r1[0]).toMatchObject({ source: "eventlog@6", table: "eventlog", row: { name: "todoCreated-v1", clientId: "client-a" } });
    // Every row is past its set's `from` and at most its `to`.
    for (const [m, rows] of [
      [sets[0]!, r1],
      [sets[1]!, r2],
    ] as const) {
      for (const c of rows) {
        const key = [c.row.seqNumGlobal as number, c.row.seqNumClient as number];
        expect(compareKeys(key, m.from[0]!.value!)).toBe(1);
        expect(compareKeys(key, m.to[0]!.value!)).toBeLessThanOrEqual(0);
      }
    }
    // Full + chain = the live table.
    const liveDb = new DatabaseSync(db, { readOnly: true });
    expect(300 + r1.length + r2.length).toBe((liveDb.prepare("SELECT count(*) AS n FROM eventlog").get() as { n: number }).n);
    liveDb.close();
  });

  it("refuses an incremental without a full backup (exit 9), leaving nothing behind", async () => {
    const db = join(t.dir, "a.db");
    writeLiveStoreDb(db, { events: 3 });
    const r = await cli(["run", "--db", db, "--kind", "incremental", "--tmp-dir", join(t.dir, "tmp")]);
    expect(r.code).toBe(EXIT.notFound);
    expect(r.stderr).toMatch(/run a full backup first/);
    expect(await t.bucket.store.listAll("backups/")).toEqual([]);
  });

  it("a stray future-dated object does not move the chain: the set takes the Worker's time, the stray stays outside", async () => {
    const db = join(t.dir, "a.db");
    writeLiveStoreDb(db, { events: 3 });
    const future = "20991231T235959Z";
    // Written straight into R2 (the Worker refuses such a key), as a stray object from elsewhere would be.
    await t.bucket.worker.mf.getR2Bucket("BACKUP_BUCKET").then((b) => b.put(fileKey("full", future, "a.db.zst"), "junk"));
    const before = Date.now();
    const r = await backup({ store: t.bucket.store, databases: [{ path: db }], kind: "full", tmpDir: join(t.dir, "tmp"), promote: false });
    expect(parseTimestamp(r.id).getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(parseTimestamp(r.id).getTime()).toBeLessThanOrEqual(Date.now() + 1000);
    expect((await t.bucket.store.chain()).head?.tail.map((e) => e.id)).toEqual([r.id]);
    const all = await verifyAllComplete(t.bucket.store);
    expect(all.full).toEqual([r.id]);
    expect(all.incomplete).toEqual([`full/${future}`]);
  });
});

describe("clear failures with distinct exit codes", () => {
  it("exit 3 for a missing database, never creating it", async () => {
    const missing = join(t.dir, "missing.db");
    const r = await cli(["run", "--db", missing, "--kind", "full", "--tmp-dir", join(t.dir, "tmp")]);
    expect(r.code).toBe(EXIT.database);
    expect(r.stderr).toMatch(/open database '.*missing\.db': no such file/);
    expect(r.stderr.match(/no such file/g)).toHaveLength(1); // said once, with the exit code
    expect(r.stderr).toContain(`"exitCode":${EXIT.database}`);
    expect(await readdir(t.dir)).not.toContain("missing.db");
  });

  it("exit 3 for a file that is not SQLite, and for an empty file", async () => {
    await writeFile(join(t.dir, "notes.db"), "hello, this is not a database at all");
    await writeFile(join(t.dir, "empty.db"), "");
    for (const name of ["notes.db", "empty.db"]) {
      const r = await cli(["run", "--db", join(t.dir, name), "--kind", "full", "--tmp-dir", join(t.dir, "tmp")]);
      expect(r.code).toBe(EXIT.database);
      expect(r.stderr).toMatch(/not a SQLite database/);
    }
    expect(await t.bucket.store.listAll("backups/")).toEqual([]);
  });

  it("exit 4 for a rejected token, with the token never printed", async () => {
    const db = join(t.dir, "a.db");
    writeLiveStoreDb(db, { events: 3 });
    const r = await cli(["run", "--db", db, "--kind", "full", "--tmp-dir", join(t.dir, "tmp")], { SERVER_BYPASS_TOKEN: "wrong-secret-token-value" });
    expect(r.code).toBe(EXIT.auth);
    expect(r.stderr).toMatch(/rejected the token/);
    expect(r.stderr).not.toContain("wrong-secret-token-value");
  });

  it("a failure after the set got its id says the error once, and which set did not complete", async () => {
    const db = join(t.dir, "a.db");
    writeLiveStoreDb(db, { events: 3 });
    const proxy = await startFaultProxy(t.bucket.url, (req) => (req.method === "PUT" ? "500" : "pass"));
    try {
      const r = await cli(["run", "--db", db, "--kind", "full", "--tmp-dir", join(t.dir, "tmp"), "--retries", "1", "--backoff-ms", "5"], { R2_WORKER_URL: proxy.url });
      expect(r.code).not.toBe(EXIT.ok);
      expect(r.stderr.match(/"exitCode"/g)).toHaveLength(1);
      expect(r.stderr).toMatch(/full backup \d{8}T\d{6}Z did not complete: without its manifest, nothing under that id is listed or restored/);
    } finally {
      await proxy.close();
    }
    expect((await verifyAllComplete(t.bucket.store)).full).toEqual([]);
  });

  it("exit 5 for an unreachable Worker after the retries (--retries 2: three attempts)", async () => {
    const db = join(t.dir, "a.db");
    writeLiveStoreDb(db, { events: 3 });
    const r = await cli(["run", "--db", db, "--kind", "full", "--tmp-dir", join(t.dir, "tmp"), "--retries", "2", "--backoff-ms", "5"], { R2_WORKER_URL: "http://127.0.0.1:9" });
    expect(r.code).toBe(EXIT.unreachable);
    expect(r.stderr).toMatch(/failed 3 times/);
  });

  it("exit 7 while another run holds the lock; a stale lock (its pid gone, or reused by a process started later) is taken over", async () => {
    const db = join(t.dir, "a.db");
    writeLiveStoreDb(db, { events: 3 });
    const tmp = join(t.dir, "tmp");
    await mkdir(tmp, { recursive: true });
    await writeFile(join(tmp, "r2backup.lock"), `${process.ppid}\n`); // a live pid that is not this process
    const busy = await cli(["run", "--db", db, "--kind", "full", "--tmp-dir", tmp]);
    expect(busy.code).toBe(EXIT.busy);
    // The same live pid with its own start time (as a run writes it) is busy; with another, the pid was reused.
    const stat = readFileSync(`/proc/${process.ppid}/stat`, "utf8");
    const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!;
    await writeFile(join(tmp, "r2backup.lock"), `${process.ppid} ${start}\n`);
    expect((await cli(["run", "--db", db, "--kind", "full", "--tmp-dir", tmp])).code).toBe(EXIT.busy);
    await writeFile(join(tmp, "r2backup.lock"), `${process.ppid} ${Number(start) - 100}\n`);
    const reused = await cli(["run", "--db", db, "--kind", "full", "--tmp-dir", tmp]);
    expect(reused.code, reused.stderr).toBe(0);
    await writeFile(join(tmp, "r2backup.lock"), "2147483646\n"); // no such process
    const ok = await cli(["run", "--db", db, "--kind", "full", "--tmp-dir", tmp]);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it("exit 2 for unknown flags, and --help lists the commands and exit codes", async () => {
    expect((await cli(["run", "--bogus"])).code).toBe(EXIT.usage);
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    for (const word of ["run", "list", "status", "agent", "trigger", "Exit codes", " 6  a disk is full: the temporary disk (--tmp-dir), or the target's for restore"])
      expect(help.stdout).toContain(word);
  });
});

describe("list and status", () => {
  it("list shows complete and incomplete sets; status is healthy after a full backup", async () => {
    const db = join(t.dir, "a.db");
    writeLiveStoreDb(db, { events: 3 });
    const empty = await cli(["status"]);
    expect(empty.code).toBe(1);
    expect(empty.stdout).toMatch(/UNHEALTHY/);
    const r = await backup({ store: t.bucket.store, databases: [{ path: db }], kind: "full", tmpDir: join(t.dir, "tmp") });
    // A partial set just ahead of the backup (within the Worker's clock skew; a set further ahead is a problem of status).
    const partial = formatTimestamp(new Date(Date.now() + 2 * 60_000));
    await t.bucket.store.put(fileKey("incremental", partial, "changes.ndjson.zst"), "partial");
    const list = await cli(["list", "--json"]);
    const sets = (JSON.parse(list.stdout) as { sets: { kind: string; id: string; complete: boolean }[] }).sets;
    expect(sets.map((s) => [s.kind, s.id, s.complete])).toEqual([
      ["full", r.id, true],
      ["incremental", partial, false],
      ["daily", r.promoted!.day, true],
    ]);
    expect((await cli(["list"])).stdout).toMatch(/INCOMPLETE/);
    const status = await cli(["status", "--json"]);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ healthy: true, full: { id: r.id } });
    expect(parseManifest((await download(t.bucket.store, r.manifestKey)).toString()).id).toBe(r.id);
  });

  it("status reads failed drills: healthy with a warning naming the failed drill, never a parse error", async () => {
    const db = join(t.dir, "a.db");
    writeLiveStoreDb(db, { events: 3 });
    await backup({ store: t.bucket.store, databases: [{ path: db }], kind: "full", tmpDir: join(t.dir, "tmp") });
    await t.bucket.store.put("backups/drills/20260101T000000Z.json", "{}");
    await t.bucket.store.put("backups/drills/20260102T000000Z.failed.json", "{}");
    const status = await cli(["status", "--json"]);
    expect(status.code, status.stderr).toBe(0);
    const body = JSON.parse(status.stdout) as { drill: { id: string }; warnings: string[] };
    expect(body.drill.id).toBe("20260101T000000Z");
    expect(body.warnings.join()).toMatch(/20260102T000000Z failed/);
    const text = await cli(["status"]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/warning: the last restore drill 20260102T000000Z failed/);
  });
});
