import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { Readable } from "node:stream";
import { zstdDecompressSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ChainEntry } from "../../core/index.ts";
import { chooseKind, resolveSources, sourceNameFor } from "../../job/backup.ts";
import { exportChanges } from "../../job/changes.ts";
import { parseChangeTable } from "../../job/commands/run.ts";
import { parseListen, tokenMatches } from "../../job/commands/agent.ts";
import { EXIT, JobError } from "../../job/errors.ts";
import { acquireLock } from "../../job/lock.ts";
import { createLogger, redact } from "../../job/log.ts";
import { checkSnapshot, snapshotDatabase } from "../../job/sqlite.ts";
import { compressFile, compressStream, FRAME_BYTES } from "../../job/stream.ts";
import { decodeChanges, sha256, tempDir, writeLiveStoreDb } from "./backup-fixtures.ts";
import { zstdFrames } from "./zstd-walk.ts";

/** The adapters and pure helpers of the job, on real files: snapshot + check, streams, changes, lock, logs. */

let dir: { path: string; remove(): Promise<void> };
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await dir.remove();
});

describe("snapshot and check", () => {
  it("copies in one step and checks the copy: pages, size, integrity, row counts and the eventlog watermark", async () => {
    const db = join(dir.path, "a.db");
    writeLiveStoreDb(db, { events: 1234, docs: 3 });
    const pages = await snapshotDatabase(db, join(dir.path, "snap.db"));
    const info = await checkSnapshot(join(dir.path, "snap.db"), [{ table: "eventlog", columns: ["seqNumGlobal", "seqNumClient"] }], { pagesCopied: pages, integrity: "full" });
    expect(pages).toBe(info.pageCount);
    expect(info.sizeBytes).toBe(info.pageCount * info.pageSize);
    expect(info.tables).toEqual({ eventlog: 1234, documents: 3 });
    expect(info.watermarks).toEqual([
      { table: "eventlog", columns: ["seqNumGlobal", "seqNumClient"], value: [1234, 0], count: 1234, rowSha256: expect.stringMatching(/^[0-9a-f]{64}$/) },
    ]);
  });

  it("a truncated copy fails the check as an integrity error (exit 8)", async () => {
    const db = join(dir.path, "a.db");
    writeLiveStoreDb(db, { events: 2000 });
    await snapshotDatabase(db, join(dir.path, "snap.db"));
    const bytes = await readFile(join(dir.path, "snap.db"));
    await writeFile(join(dir.path, "cut.db"), bytes.subarray(0, bytes.length - 4096));
    const err = await checkSnapshot(join(dir.path, "cut.db"), []).catch((e: unknown) => e);
    expect((err as JobError).exitCode).toBe(EXIT.integrity);
  });
});

describe("compression streams", () => {
  it("compressFile and compressStream hash what they store, and every frame carries its content checksum", async () => {
    const path = join(dir.path, "data.bin");
    const data = Buffer.from(Array.from({ length: 400_000 }, (_, i) => `line ${i % 977}\n`).join(""));
    await writeFile(path, data);
    const outputs: Buffer[] = [];
    for (const compress of [
      (sink: (c: Buffer) => Promise<void>) => compressFile(path, sink),
      (sink: (c: Buffer) => Promise<void>) => compressStream(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), sink),
    ]) {
      const chunks: Buffer[] = [];
      const d = await compress(async (c) => void chunks.push(Buffer.from(c)));
      const stored = Buffer.concat(chunks);
      expect(d).toEqual({ size: stored.length, sha256: sha256(stored), uncompressedSize: data.length });
      expect(zstdDecompressSync(stored)).toEqual(data);
      outputs.push(stored);
    }
    // compressFile's 1 MiB frames and compressStream's one frame: each with the checksum a decoder checks.
    expect(data.length).toBeGreaterThan(3 * FRAME_BYTES);
    expect(zstdFrames(outputs[0]!).map((f) => f.checksum)).toEqual(Array(Math.ceil(data.length / FRAME_BYTES)).fill(true));
    expect(zstdFrames(outputs[1]!).map((f) => f.checksum)).toEqual([true]);
  });

  it("a failing sink fails the compression instead of hanging", async () => {
    const path = join(dir.path, "data.bin");
    await writeFile(path, Buffer.alloc(3 * 1024 * 1024, 7));
    await expect(compressFile(path, async () => Promise.reject(new Error("upload broke")))).rejects.toThrow("upload broke");
  });
});

describe("change export", () => {
  it("exports rows strictly past the watermark in key order, and carries the new watermark", async () => {
    const db = join(dir.path, "a.db");
    writeLiveStoreDb(db, { events: 10 });
    const ex = exportChanges(
      [{ source: "s", db }],
      [{ table: "eventlog", columns: ["seqNumGlobal", "seqNumClient"] }],
      [{ source: "s", table: "eventlog", columns: ["seqNumGlobal", "seqNumClient"], value: [7, 0] }],
    );
    let text = "";
    for await (const t of ex.lines) text += t;
    expect(decodeChanges(Buffer.from(text)).map((c) => c.row.seqNumGlobal)).toEqual([8, 9, 10]);
    expect(ex.result()).toEqual({
      changes: { "s/eventlog": 3 },
      to: [{ source: "s", table: "eventlog", columns: ["seqNumGlobal", "seqNumClient"], value: [10, 0], count: 10, rowSha256: expect.stringMatching(/^[0-9a-f]{64}$/) }],
    });
  });
});

describe("lock", () => {
  it("a second lock in the same process is busy until the first is released", async () => {
    const path = join(dir.path, "x.lock");
    const lock = await acquireLock(path);
    const err = await acquireLock(path).catch((e: unknown) => e);
    expect((err as JobError).exitCode).toBe(EXIT.busy);
    await lock.release();
    await (await acquireLock(path)).release();
  });

  it("two locks asked for at once in the same process: one is held, the other is busy (it does not read its own pid as stale)", async () => {
    const path = join(dir.path, "both.lock");
    const results = await Promise.allSettled([acquireLock(path), acquireLock(path)]);
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    const failed = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect((failed.reason as JobError).exitCode).toBe(EXIT.busy);
    for (const r of results) if (r.status === "fulfilled") await r.value.release();
    await (await acquireLock(path)).release();
  });

  it("two runs that find the same stale lock: the one that takes it over second is busy and leaves the first's lock in place", async () => {
    const path = join(dir.path, "race.lock");
    await writeFile(path, "2147483646\n"); // its owner is gone
    const other = await holdLockInAnotherProcess(path);
    try {
      // Between reading the stale lock and moving it aside, another run takes it over.
      const err = await acquireLock(path, { beforeTakeover: other.take }).catch((e: unknown) => e);
      expect((err as JobError).exitCode).toBe(EXIT.busy);
      expect((err as JobError).message).toContain("took over the stale lock first");
      expect((await readFile(path, "utf8")).trim().split(/\s+/)[0]).toBe(String(other.pid));
      expect(readdirSync(dir.path).sort()).toEqual(["race.lock"]);
    } finally {
      await other.release();
    }
    await (await acquireLock(path)).release();
  });
});

/**
 * A second process running `acquireLock(path)` when told (`take`, which resolves once it holds the lock) and
 * releasing it when told (`release`, which resolves once it has exited).
 */
async function holdLockInAnotherProcess(path: string): Promise<{ pid: number; take: () => Promise<void>; release: () => Promise<void> }> {
  const lockModule = new URL("../../job/lock.ts", import.meta.url).href;
  const code = `import { acquireLock } from ${JSON.stringify(lockModule)};
let lock;
process.stdin.setEncoding("utf8");
process.stdin.on("data", async (line) => {
  if (line.startsWith("take")) { lock = await acquireLock(${JSON.stringify(path)}); process.stdout.write("held\\n"); }
  else { await lock?.release(); process.exit(0); }
});
process.stdout.write("ready\\n");`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! });
  const next = () =>
    new Promise<string>((resolve, reject) => {
      lines.once("line", resolve);
      child.once("exit", (code) => reject(new Error(`the other process exited with ${code}`)));
    });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  expect(await next()).toBe("ready");
  return {
    pid: child.pid!,
    take: async () => {
      child.stdin!.write("take\n");
      expect(await next()).toBe("held");
    },
    release: async () => {
      child.stdin!.write("release\n");
      await exited;
    },
  };
}

describe("pure helpers", () => {
  it("source names follow core's charset and stay unique", () => {
    expect(sourceNameFor("store1/store1/eventlog@6.db")).toBe("store1.store1.eventlog@6");
    expect(sourceNameFor("../weird name!.sqlite")).toBe("weird_name_");
    expect(resolveSources([{ path: "/a/app.db" }, { path: "/b/app.db" }]).map((s) => s.source)).toEqual(["app", "app-2"]);
    expect(() => resolveSources([])).toThrow(JobError);
    // A file given twice (however spelt), or one explicit name for two databases, is a usage error.
    expect(() => resolveSources([{ path: "/a/app.db" }, { path: "/a/../a/app.db" }])).toThrow(
      /'\/a\/..\/a\/app.db': it is given twice \(databases 1 and 2\) \(pass each --db once\)/,
    );
    expect(() =>
      resolveSources([
        { path: "/a/x.db", source: "app" },
        { path: "/b/y.db", source: "app" },
      ]),
    ).toThrow(/the source name 'app' is given to two databases/);
    expect(resolveSources([{ path: "/a/app.db", source: "app" }, { path: "/b/app.db" }]).map((s) => s.source)).toEqual(["app", "app-2"]);
  });

  it("auto is full without a full backup in the chain or when it is 6 hours old, else incremental; never a negative age", () => {
    const full: ChainEntry = { kind: "full", id: "20260101T000000Z", base: "20260101T000000Z", previous: null, capturedAt: "2026-01-01T00:00:02.000Z", sources: ["a"] };
    expect(chooseKind("auto", undefined, new Date("2026-01-01T01:00:00Z")).kind).toBe("full");
    expect(chooseKind("auto", full, new Date("2026-01-01T05:20:00Z")).kind).toBe("incremental");
    expect(chooseKind("auto", full, new Date("2026-01-01T06:00:02Z")).kind).toBe("full");
    // A 6-hourly cron's next run starts a moment less than 6 h after the full's data was read: it is due
    // (without the margin every other run was an incremental and the full aged to 12 h, past the 7 h alert).
    expect(chooseKind("auto", full, new Date("2026-01-01T06:00:00Z")).kind).toBe("full");
    expect(chooseKind("auto", full, new Date("2026-01-01T05:31:00Z")).kind).toBe("full");
    expect(chooseKind("auto", full, new Date("2026-01-01T05:29:00Z")).kind).toBe("incremental");
    expect(chooseKind("auto", full, new Date("2026-01-01T01:00:00Z"), 1).kind).toBe("full");
    expect(chooseKind("auto", full, new Date("2026-01-01T00:53:00Z"), 1).kind).toBe("incremental");
    expect(chooseKind("full", full, new Date("2026-01-01T01:00:00Z")).kind).toBe("full");
    // The full's data was read after "now" (the Worker's clock is the only one): age 0, not negative.
    expect(chooseKind("auto", full, new Date("2026-01-01T00:00:00Z")).reason).toMatch(/is 0\.0 h old/);
  });

  it("flags: --changes-table and --listen parse or fail as usage errors", () => {
    expect(parseChangeTable("eventlog:seqNumGlobal,seqNumClient")).toEqual({ table: "eventlog", columns: ["seqNumGlobal", "seqNumClient"] });
    expect(() => parseChangeTable("eventlog")).toThrow(/table>:<col1>/);
    expect(parseListen("0.0.0.0:8788")).toEqual({ host: "0.0.0.0", port: 8788 });
    expect(parseListen("9000")).toEqual({ host: "127.0.0.1", port: 9000 });
    expect(() => parseListen("host:port")).toThrow(JobError);
  });

  it("tokens compare in constant time and must match exactly", () => {
    expect(tokenMatches("secret", "secret")).toBe(true);
    expect(tokenMatches("secret2", "secret")).toBe(false);
    expect(tokenMatches(undefined, "secret")).toBe(false);
    expect(tokenMatches("", "")).toBe(false);
  });
});

describe("logs", () => {
  it("JSON lines off a terminal, a progress bar on one, and no token in either", () => {
    let json = "";
    const j = createLogger({ write: (t: string) => (json += t), isTTY: false });
    j.info("retry with Authorization: Bearer abc.def", { n: 1 });
    j.progress({ type: "progress", phase: "upload", file: "a.db.zst", bytes: 10, total: 10 });
    const lines = json
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ level: "info", n: 1 });
    expect(String(lines[0]!.message)).not.toContain("abc.def");
    expect(lines[1]).toMatchObject({ message: "progress", bytes: 10, total: 10 });
    let tty = "";
    const t = createLogger({ write: (s: string) => (tty += s), isTTY: true });
    t.progress({ type: "progress", phase: "upload", file: "a.db.zst", bytes: 5 * 1024 * 1024, total: 10 * 1024 * 1024 });
    expect(tty).toContain("\r");
    expect(tty).toMatch(/\[#{15}\.{15}\] 50%/);
    expect(redact("token=xyz&a=1")).toBe("token=[redacted]&a=1");
  });
});
