import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { copyFile, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Readable } from "node:stream";
import { createZstdDecompress, zstdDecompressSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { main } from "../../job/cli.ts";
import { EXIT, JobError } from "../../job/errors.ts";
import { Pins } from "../../job/pinned.ts";
import { checkSnapshot, copyUnderSharedLock, materializeSnapshot, patchUnderSharedLock, snapshotDatabase } from "../../job/sqlite.ts";
import { compressFile, FRAME_BYTES, FRAME_WINDOW_LOG, parseCpuShare } from "../../job/stream.ts";
import { frameAligned } from "../../job/zstd-frames.ts";
import { chunked, zstdFrames } from "./zstd-walk.ts";
import { collector, JOB_ROOT, sha256, tempDir, writeLiveStoreDb } from "./backup-fixtures.ts";

/**
 * Issue 16: the full backup's one pass (frames compressed in parallel, read by every standard decoder), the
 * pinned WAL snapshot and the stepped rollback-journal copy under a real concurrent writer, and the CPU cap's
 * validation.
 */

let dir: { path: string; remove(): Promise<void> };
const writers: ChildProcess[] = [];
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  for (const w of writers.splice(0)) w.kill("SIGKILL");
  await dir.remove();
});

/** Bytes that compress like a database: repeated lines with counters, not a multiple of the frame size. */
function sample(bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0, n = 0; i < bytes; n++) i += out.write(`row ${n} ${(n * 7919) % 1000} some text to compress\n`, i);
  return out;
}

/** `stored` through a restore's decoder, in pieces of `cut` bytes or cut at the offsets `cut` lists. */
async function decodeStreaming(stored: Buffer, cut: number | number[], chunkSize?: number): Promise<Buffer> {
  const cuts = typeof cut === "number" ? Array.from({ length: Math.ceil(stored.length / cut) }, (_, i) => (i + 1) * cut) : cut;
  const out: Buffer[] = [];
  for await (const c of Readable.from(chunked(stored, cuts))
    .pipe(frameAligned())
    .pipe(createZstdDecompress(chunkSize ? { chunkSize } : {})))
    out.push(c as Buffer);
  return Buffer.concat(out);
}

/** Starts bench/writer.ts on `db` (one commit every `everyMs`) and waits for its first commit. */
async function startWriter(db: string, everyMs = 2): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(JOB_ROOT, "bench/writer.ts"), db, String(everyMs)], { stdio: ["ignore", "pipe", "inherit"] });
  writers.push(child);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  while (!out.includes("ready")) await new Promise((r) => setTimeout(r, 10));
  return child;
}

async function stopWriter(child: ChildProcess): Promise<{ commits: number }> {
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.kill("SIGTERM");
  await once(child, "close");
  return JSON.parse(out.trim().split("\n").at(-1)!) as { commits: number };
}

/** A LiveStore-shaped database in rollback-journal mode, an open connection to it, and where its copy goes. */
function rollbackDb(name: string, events: number): { db: string; c: DatabaseSync; snap: string } {
  const db = join(dir.path, `${name}.db`);
  writeLiveStoreDb(db, { events, docs: 5 });
  const c = new DatabaseSync(db, { timeout: 30_000 });
  c.exec("PRAGMA journal_mode = DELETE");
  return { db, c, snap: join(dir.path, `${name}-snap.db`) };
}

describe("compressFile: frames in parallel", () => {
  it("round-trips byte-exact through a restore's decoder (frame by frame into createZstdDecompress: any input pieces, several buffer sizes), zstdDecompressSync and zstd -d", async () => {
    const data = sample(3 * FRAME_BYTES + 12_345);
    const path = join(dir.path, "data.bin");
    await writeFile(path, data);
    const chunks: Buffer[] = [];
    const digest = await compressFile(path, async (c) => void chunks.push(Buffer.from(c)), { threads: 3 });
    const stored = Buffer.concat(chunks);
    expect(digest).toEqual({ size: stored.length, sha256: sha256(stored), uncompressedSize: data.length });
    // Four frames, each one segment (its window is the frame, FRAME_WINDOW_LOG: the compressor never wraps its
    // buffer) that records its size and ends with its data and content checksum, not an empty block (which Node's
    // decoder failed on).
    const sizes = [FRAME_BYTES, FRAME_BYTES, FRAME_BYTES, 12_345];
    expect(zstdFrames(stored).map(({ end: _, ...f }) => f)).toEqual(sizes.map((contentSize) => ({ windowLog: null, contentSize, emptyLastBlock: false, checksum: true })));
    expect(2 ** FRAME_WINDOW_LOG).toBe(FRAME_BYTES);
    // Fed as a restore feeds it (frame by frame), in pieces of any size and pieces that end 1 to 4 bytes before
    // every frame end (inside its checksum, where Node's decoder alone stops or loses its place).
    const ends = zstdFrames(stored).map((f) => f.end);
    for (const pieces of [1000, 65_536, stored.length, ...[1, 2, 3, 4].map((k) => ends.map((e) => e - k))]) {
      for (const chunkSize of [undefined, 64 << 10, 256 << 10]) expect((await decodeStreaming(stored, pieces, chunkSize)).equals(data)).toBe(true);
    }
    expect(zstdDecompressSync(stored).equals(data)).toBe(true);
    await writeFile(join(dir.path, "data.zst"), stored);
    const cli = spawnSync("zstd", ["-d", "-c", join(dir.path, "data.zst")], { maxBuffer: 64 << 20 });
    if (cli.error) return; // no zstd CLI on this machine: the Node decoders above are the ones restore uses
    expect(cli.status).toBe(0);
    expect(cli.stdout.equals(data)).toBe(true);
  });

  it("writes the same bytes whatever the number of threads and under a CPU cap", async () => {
    const path = join(dir.path, "data.bin");
    await writeFile(path, sample(2 * FRAME_BYTES + 7));
    const run = async (options: { threads?: number; cpu?: number }) => {
      const chunks: Buffer[] = [];
      await compressFile(path, async (c) => void chunks.push(Buffer.from(c)), options);
      return Buffer.concat(chunks);
    };
    const one = await run({ threads: 1 });
    expect((await run({ threads: 4 })).equals(one)).toBe(true);
    expect((await run({ cpu: 0.5 })).equals(one)).toBe(true);
  });

  it("an empty file is one empty frame", async () => {
    const path = join(dir.path, "empty.bin");
    await writeFile(path, "");
    const chunks: Buffer[] = [];
    const d = await compressFile(path, async (c) => void chunks.push(Buffer.from(c)));
    expect(d.uncompressedSize).toBe(0);
    expect(zstdDecompressSync(Buffer.concat(chunks)).length).toBe(0);
  });
});

describe("the CPU cap", () => {
  it("refuses a value that is not a positive number of cores, naming it", () => {
    for (const bad of ["0", "-1", "abc", "", "65", "NaN"]) {
      const e = (() => {
        try {
          parseCpuShare(bad, "flag '--cpu'");
        } catch (error) {
          return error;
        }
      })();
      expect(e).toBeInstanceOf(JobError);
      expect((e as JobError).exitCode).toBe(EXIT.usage);
      expect((e as Error).message).toMatch(`parse flag '--cpu': '${bad}' is not a number of cores above 0 and at most 64 (e.g. --cpu 0.5`);
    }
    expect(parseCpuShare("0.5")).toBe(0.5);
    expect(parseCpuShare(2)).toBe(2);
  });

  it("r2backup run --cpu 0 exits 2 with the flag named, before anything is backed up", async () => {
    const stdout = collector();
    const stderr = collector();
    const code = await main(["run", "--db", join(dir.path, "missing.db"), "--cpu", "0"], {
      stdout,
      stderr,
      env: { R2_WORKER_URL: "http://127.0.0.1:9", SERVER_BYPASS_TOKEN: "t" },
    });
    expect(code).toBe(EXIT.usage);
    expect(stderr.text()).toContain("parse flag '--cpu': '0' is not a number of cores above 0 and at most 64");
  });
});

describe("snapshots beside a writer", () => {
  it("a WAL database is pinned, not copied: the writer goes on, and the compressed pin holds exactly the checked transaction", async () => {
    const db = join(dir.path, "wal.db");
    writeLiveStoreDb(db, { events: 20_000, docs: 5 });
    const writer = await startWriter(db);
    const snap = join(dir.path, "snap.db");
    const pins = new Pins();
    const pages = await snapshotDatabase(db, snap, { pins });
    expect(pins.at(snap)?.pageCount).toBe(pages);
    const info = await checkSnapshot(snap, [], { pagesCopied: pages, integrity: "full", pins });
    await new Promise((r) => setTimeout(r, 200)); // the writer keeps committing while the pin is held
    const chunks: Buffer[] = [];
    const digest = await compressFile(snap, async (c) => void chunks.push(Buffer.from(c)), { pins });
    const { commits } = await stopWriter(writer);
    pins.releaseAll();
    expect(pins.at(snap)).toBeUndefined();
    const restored = join(dir.path, "restored.db");
    await writeFile(restored, zstdDecompressSync(Buffer.concat(chunks)));
    expect(digest.uncompressedSize).toBe(info.sizeBytes);
    const copy = new DatabaseSync(restored, { readOnly: true });
    const live = new DatabaseSync(db, { readOnly: true });
    try {
      expect(copy.prepare("PRAGMA integrity_check").get()).toEqual({ integrity_check: "ok" });
      const rows = (d: DatabaseSync) => Number((d.prepare("SELECT count(*) AS n FROM bench_writer").get() as { n: number }).n);
      expect(rows(copy)).toBe(info.tables.bench_writer);
      // The writer committed while the pin was held (it was not blocked) and the copy did not see those rows.
      expect(rows(live)).toBe(commits);
      expect(rows(live)).toBeGreaterThan(rows(copy));
    } finally {
      copy.close();
      live.close();
    }
    // Released: the log can be checkpointed whole again.
    const c = new DatabaseSync(db);
    expect(c.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get()).toMatchObject({ busy: 0 });
    c.close();
  });

  it("materializeSnapshot writes a pin out as a file a reader can open", async () => {
    const db = join(dir.path, "wal.db");
    writeLiveStoreDb(db, { events: 500 });
    const snap = join(dir.path, "snap.db");
    const pins = new Pins();
    await snapshotDatabase(db, snap, { pins });
    // Without the run's pins a pinned snapshot is not found: nothing was ever written at its path.
    await expect(checkSnapshot(snap, [])).rejects.toThrow(/left no file/);
    expect(await materializeSnapshot(snap, pins)).toBe(snap);
    expect(pins.size).toBe(0);
    const info = await checkSnapshot(snap, [{ table: "eventlog", columns: ["seqNumGlobal", "seqNumClient"] }], { integrity: "full" });
    expect(info.tables.eventlog).toBe(500);
  });

  it("a rollback-journal database copied in steps under a writer ends, consistent, with rows the writer committed", async () => {
    const db = join(dir.path, "rollback.db");
    writeLiveStoreDb(db, { events: 30_000, docs: 5 });
    const c = new DatabaseSync(db);
    c.exec("PRAGMA journal_mode = DELETE");
    c.close();
    const writer = await startWriter(db);
    const snap = join(dir.path, "snap.db");
    const pages = await snapshotDatabase(db, snap, { stepPages: 16 });
    const { commits } = await stopWriter(writer);
    const info = await checkSnapshot(snap, [], { pagesCopied: pages, integrity: "full" });
    expect(info.tables.bench_writer).toBeGreaterThan(0);
    expect(info.tables.bench_writer).toBeLessThanOrEqual(commits);
    expect(info.tables.eventlog).toBe(30_000);
  });

  it("the rollback-journal fallback makes its copy exact under one shared lock: no commit gets through during it, one does after", async () => {
    const { db, c, snap } = rollbackDb("locked", 30_000);
    await copyFile(db, snap);
    const patching = patchUnderSharedLock(c, db, snap);
    const other = new DatabaseSync(db, { timeout: 0 });
    expect(() => other.exec("CREATE TABLE during_copy (x)")).toThrow(/locked|busy/i);
    const pages = await patching;
    expect(c.isTransaction).toBe(false);
    other.exec("CREATE TABLE after_copy (x)");
    other.close();
    c.close();
    const info = await checkSnapshot(snap, [], { pagesCopied: pages, integrity: "full" });
    expect(info.pageCount).toBe(pages);
    expect(info.tables.eventlog).toBe(30_000);
    expect(info.tables.after_copy).toBeUndefined();
  });

  it("the copy taken before the lock is patched to the file as it is under the lock: commits since, a grown file, a shrunk one", async () => {
    const { db, c, snap } = rollbackDb("patched", 20_000);
    await copyFile(db, snap);
    // Commits after the copy: rows in place (pages inside the copy change) and enough to grow the file past it.
    c.exec("UPDATE eventlog SET argsJson = argsJson || ' ' WHERE seqNumGlobal % 97 = 0");
    c.exec("CREATE TABLE grown (x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) INSERT INTO grown SELECT randomblob(4000) FROM n");
    const grownPages = await patchUnderSharedLock(c, db, snap);
    expect((await readFile(snap)).equals(await readFile(db))).toBe(true);
    expect((await checkSnapshot(snap, [], { pagesCopied: grownPages, integrity: "full" })).tables.grown).toBe(300);
    // The file shrinks (VACUUM): the copy, now longer than the file, is cut back to its pages.
    c.exec("DROP TABLE grown; VACUUM");
    const pages = await patchUnderSharedLock(c, db, snap);
    c.close();
    expect(pages).toBeLessThan(grownPages);
    expect((await readFile(snap)).equals(await readFile(db))).toBe(true);
    expect((await checkSnapshot(snap, [], { pagesCopied: pages, integrity: "full" })).tables.grown).toBeUndefined();
  });

  it("copyUnderSharedLock (the rough copy, then the patch) gives the file byte for byte", async () => {
    const { db, c, snap } = rollbackDb("rough", 10_000);
    const pages = await copyUnderSharedLock(c, db, snap);
    c.close();
    expect((await readFile(snap)).equals(await readFile(db))).toBe(true);
    const header = await readFile(db);
    expect((await stat(snap)).size).toBe(pages * header.readUInt16BE(16));
  });

  it("the locked copy under a writer that commits all the while is consistent and holds some of its rows", async () => {
    const { db, c, snap } = rollbackDb("locked-busy", 30_000);
    const writer = await startWriter(db);
    const pages = await copyUnderSharedLock(c, db, snap);
    const { commits } = await stopWriter(writer);
    c.close();
    const info = await checkSnapshot(snap, [], { pagesCopied: pages, integrity: "full" });
    expect(info.tables.eventlog).toBe(30_000);
    expect(info.tables.bench_writer).toBeGreaterThan(0);
    expect(info.tables.bench_writer).toBeLessThan(commits);
  });
});
