import { spawn } from "node:child_process";
import { linkSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { zstdCompressSync, zstdDecompressSync } from "node:zlib";
import tar from "tar-stream";
import { beforeEach, describe, expect, it } from "vitest";
import { appendDemoEvents } from "../../bench/livestore-db.ts";
import { CHANGES_FILE, fileKey, manifestKey, type FileEntry } from "../../core/index.ts";
import { JobError } from "../../job/errors.ts";
import { restore } from "../../job/restore/index.ts";
import { HttpStore } from "../../job/store/http-store.ts";
import { sha256 } from "./backup-fixtures.ts";
import { startFaultProxy } from "./restore-proxy.ts";
import { useTestBucket } from "./bucket.ts";
import { dumpDatabase, fileSha256, uploadFull, uploadIncremental } from "./restore-fixtures.ts";

/**
 * Every way a restore can fail ends in a clear error, and the existing target stays byte for byte as it
 * was, with no temporary file left beside it.
 */
const t = useTestBucket("restore-fail-");
let target: string;
let targetSha: string;

beforeEach(async () => {
  target = join(t.dir, "live.db");
  appendDemoEvents(target, 25, 42); // the existing database a failed restore must not touch
  targetSha = await fileSha256(target);
});

function source(events: number, seed = 1) {
  const path = join(t.dir, "app.src.db");
  appendDemoEvents(path, events, seed);
  return { source: "app", path };
}

async function failure(p: Promise<unknown>): Promise<JobError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(JobError);
  return e as JobError;
}

/** The target is untouched and nothing but it (and its WAL sidecars from the seeding writer) is beside it. */
async function expectTargetUntouched(): Promise<void> {
  expect(await fileSha256(target)).toBe(targetSha);
  const left = (await readdir(t.dir)).filter((f) => f.includes(".restore-") || f.endsWith(".tmp"));
  expect(left).toEqual([]);
}

/** A restore during whose download the app (here this process, as a library user's would be) opens `path`: its error. */
async function restoreOpenedMidway(options: { to?: string; dataDir?: string; force?: boolean }, path: string): Promise<JobError> {
  const { DatabaseSync } = await import("node:sqlite");
  let app: InstanceType<typeof DatabaseSync> | undefined;
  try {
    const e = await failure(
      restore({
        store: t.bucket.store,
        ...options,
        onProgress: (p) => {
          if (p.phase === "download" && !app) app = new DatabaseSync(path, { readOnly: true });
        },
      }),
    );
    expect(app).toBeDefined();
    return e;
  } finally {
    app?.close();
  }
}

const flipByte = (at: number) => (_name: string, b: Uint8Array) => {
  const copy = new Uint8Array(b);
  const i = Math.min(copy.length - 1, Math.max(0, at < 0 ? copy.length + at : at));
  copy[i] = copy[i]! ^ 0xff;
  return copy;
};

describe("a corrupted object", () => {
  it("fails the checksum, names the object, suggests the next older full, and leaves the target untouched", async () => {
    const src = source(200);
    await uploadFull(t.bucket.store, "20260105T000000Z", [src]);
    appendDemoEvents(src.path, 50, 2);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src], { tamper: flipByte(-40) });

    const e = await failure(restore({ store: t.bucket.store, to: target, force: true }));

    expect(e.kind).toBe("integrity");
    expect(e.message).toContain("backups/full/20260105T060000Z/app.db.zst");
    expect(e.message).toMatch(/sha256 [0-9a-f]{64} does not match the manifest's [0-9a-f]{64}/);
    expect(e.message).toContain("--at 20260105T000000Z");
    await expectTargetUntouched();
  });

  it("in an incremental suggests the step before it", async () => {
    const src = source(100);
    const full = await uploadFull(t.bucket.store, "20260105T000000Z", [src]);
    appendDemoEvents(src.path, 30, 2);
    const inc1 = await uploadIncremental(t.bucket.store, "20260105T010000Z", full, [src]);
    appendDemoEvents(src.path, 30, 3);
    await uploadIncremental(t.bucket.store, "20260105T020000Z", inc1, [src], { tamper: flipByte(20) });

    const e = await failure(restore({ store: t.bucket.store, to: target, force: true }));

    expect(e.kind).toBe("integrity");
    expect(e.message).toContain(`backups/incremental/20260105T020000Z/${CHANGES_FILE}`);
    expect(e.message).toMatch(/sha256 [0-9a-f]{64} does not match/);
    expect(e.message).toContain("--at 20260105T010000Z");
    await expectTargetUntouched();
  });
});

describe("a decompressed database that differs from the manifest", () => {
  /** Stored bytes the manifest describes (size and sha256 of the bytes as stored), made by `remake` from the job's. */
  const restored = (remake: (stored: Uint8Array) => Uint8Array) => {
    let made: Uint8Array | undefined;
    return {
      tamper: (name: string, stored: Uint8Array) => (name === "app.db.zst" ? (made = remake(stored)) : stored),
      tamperEntries: (files: FileEntry[]) => files.map((f) => (f.role === "database" ? { ...f, size: made!.byteLength, sha256: sha256(made!) } : f)),
    };
  };

  it.each([
    [
      // One bit of the frame's content checksum (its last 4 bytes) flipped.
      "a frame whose content does not match its checksum fails naming the object",
      (stored: Uint8Array) => Buffer.concat([stored.subarray(0, -1), Buffer.from([stored.at(-1)! ^ 1])]),
      "the stored bytes match the manifest but do not decode: zstd frame 1: Restored data doesn't match checksum",
    ],
    [
      "frames without checksums, where the manifest says every frame has one, are refused before they are decoded",
      (stored: Uint8Array) => zstdCompressSync(zstdDecompressSync(stored)),
      "zstd frame 1 carries no content checksum, and the manifest says every frame does",
    ],
  ])("%s, and leave the target untouched (the stored bytes match the manifest)", async (_name, remake, message) => {
    const src = source(200);
    await uploadFull(t.bucket.store, "20260105T000000Z", [src]);
    appendDemoEvents(src.path, 50, 2);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src], restored(remake));

    const e = await failure(restore({ store: t.bucket.store, to: target, force: true }));

    expect(e.kind).toBe("integrity");
    expect(e.message).toContain("backups/full/20260105T060000Z/app.db.zst");
    expect(e.message).toContain(message);
    expect(e.message).toContain("--at 20260105T000000Z");
    await expectTargetUntouched();
  });

  it("of a backup before 0.3 (its sha256 in the manifest), fails naming the object (hashed off the main thread after the download), and leaves the target untouched", async () => {
    const src = source(200);
    await uploadFull(t.bucket.store, "20260105T000000Z", [src]);
    appendDemoEvents(src.path, 50, 2);
    // The stored bytes are intact (their sha256 matches); only the decompressed sha256 disagrees.
    const wrong = "0".repeat(64);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src], {
      legacy: true,
      tamperEntries: (files) => files.map((f) => (f.role === "database" ? { ...f, uncompressedSha256: wrong } : f)),
    });

    for (const check of ["integrity", "quick"] as const) {
      const e = await failure(restore({ store: t.bucket.store, to: target, force: true, check }));

      expect(e.kind).toBe("integrity");
      expect(e.message).toContain("backups/full/20260105T060000Z/app.db.zst");
      expect(e.message).toMatch(new RegExp(`decompressed sha256 [0-9a-f]{64} does not match the manifest's ${wrong}`));
      expect(e.message).toContain("--at 20260105T000000Z");
      await expectTargetUntouched();
    }
  });

  it("before changes are re-applied on top of it, fails the same way", async () => {
    const src = source(100);
    const full = await uploadFull(t.bucket.store, "20260105T000000Z", [src], {
      legacy: true,
      tamperEntries: (files) => files.map((f) => (f.role === "database" ? { ...f, uncompressedSha256: "f".repeat(64) } : f)),
    });
    appendDemoEvents(src.path, 30, 2);
    await uploadIncremental(t.bucket.store, "20260105T010000Z", full, [src], { legacy: true });

    const e = await failure(restore({ store: t.bucket.store, to: target, force: true }));

    expect(e.kind).toBe("integrity");
    expect(e.message).toMatch(/app\.db\.zst'.*decompressed sha256 [0-9a-f]{64} does not match the manifest's f{64}/);
    await expectTargetUntouched();
  });
});

describe("a truncated download", () => {
  it("of an object stored short fails naming it", async () => {
    const src = source(200);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src], { tamper: (_n, b) => b.subarray(0, Math.floor(b.length / 2)) });

    const e = await failure(restore({ store: t.bucket.store, to: target, force: true }));

    expect(e.kind).toBe("integrity");
    expect(e.message).toMatch(/app\.db\.zst'.*is \d+ bytes, the manifest says \d+/);
    expect(e.message).toContain("no older backup");
    await expectTargetUntouched();
  });

  it("cut off once is resumed with Range from the last byte received", async () => {
    const src = source(400);
    const expected = dumpDatabase(src.path);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src]);
    const proxy = await startFaultProxy(t.bucket.worker.url, { kind: "cut", afterBytes: 20_000, times: 1 });
    try {
      const store = new HttpStore({ url: proxy.url, token: t.bucket.worker.bindings.SERVER_BYPASS_TOKEN!, attempts: 1 });
      const to = join(t.dir, "restored.db");
      const result = await restore({ store, to });
      expect(result.resumes).toBe(1);
      expect(proxy.ranges).toEqual([undefined, "bytes=20000-"]);
      expect(dumpDatabase(to)).toEqual(expected);
    } finally {
      await proxy.close();
    }
  });

  it("cut off every time ends in a clear error after the resumes", async () => {
    const src = source(400);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src]);
    const proxy = await startFaultProxy(t.bucket.worker.url, { kind: "cut", afterBytes: 10_000, times: 100 });
    try {
      const store = new HttpStore({ url: proxy.url, token: t.bucket.worker.bindings.SERVER_BYPASS_TOKEN!, attempts: 1 });
      const e = await failure(restore({ store, to: target, force: true, resumes: 2 }));
      expect(e.kind).toBe("integrity");
      expect(e.message).toContain("cut off 3 times");
      expect(e.message).toContain("app.db.zst");
      expect(proxy.ranges).toHaveLength(3);
    } finally {
      await proxy.close();
    }
    await expectTargetUntouched();
  });
});

describe("a missing piece of the chain", () => {
  it("a missing incremental manifest is a gap naming it and the latest restorable time", async () => {
    const src = source(100);
    const full = await uploadFull(t.bucket.store, "20260105T000000Z", [src]);
    appendDemoEvents(src.path, 10, 2);
    const inc1 = await uploadIncremental(t.bucket.store, "20260105T010000Z", full, [src]);
    appendDemoEvents(src.path, 10, 3);
    const inc2 = await uploadIncremental(t.bucket.store, "20260105T020000Z", inc1, [src]);
    appendDemoEvents(src.path, 10, 4);
    await uploadIncremental(t.bucket.store, "20260105T030000Z", inc2, [src]);
    await t.bucket.admin.delete(manifestKey("incremental", "20260105T020000Z"));

    const e = await failure(restore({ store: t.bucket.store, to: target, force: true }));

    expect(e.kind).toBe("notFound");
    expect(e.message).toContain("gap in the incremental chain: 20260105T030000Z continues 20260105T020000Z");
    expect(e.message).toContain("--at 20260105T010000Z");
    await expectTargetUntouched();
  });

  it("a changes object missing behind its manifest fails naming the object", async () => {
    const src = source(100);
    const full = await uploadFull(t.bucket.store, "20260105T000000Z", [src]);
    appendDemoEvents(src.path, 10, 2);
    await uploadIncremental(t.bucket.store, "20260105T010000Z", full, [src]);
    await t.bucket.admin.delete(fileKey("incremental", "20260105T010000Z", CHANGES_FILE));

    const e = await failure(restore({ store: t.bucket.store, to: target, force: true }));

    expect(e.kind).toBe("notFound");
    expect(e.message).toContain(`backups/incremental/20260105T010000Z/${CHANGES_FILE}`);
    expect(e.message).toContain("--at 20260105T000000Z");
    await expectTargetUntouched();
  });
});

describe("an unknown time", () => {
  it("before the oldest full backup names the oldest one", async () => {
    const src = source(50);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src]);

    const e = await failure(restore({ store: t.bucket.store, to: target, force: true, at: new Date("2026-01-04T00:00:00Z") }));

    expect(e.kind).toBe("notFound");
    expect(e.message).toContain("no complete full backup at or before it; the oldest is 20260105T060000Z");
    await expectTargetUntouched();
  });

  it("on an empty bucket says to run a full backup", async () => {
    const e = await failure(restore({ store: t.bucket.store, to: target, force: true }));
    expect(e.kind).toBe("notFound");
    expect(e.message).toContain("holds no complete full backup");
    await expectTargetUntouched();
  });
});

describe("a killed restore", () => {
  it("(the CLI, SIGKILLed mid-download) leaves the target untouched, and the next restore removes its temporary file", async () => {
    const src = source(400);
    const expected = dumpDatabase(src.path);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src]);
    const proxy = await startFaultProxy(t.bucket.worker.url, { kind: "stall", afterBytes: 30_000 });
    const bin = fileURLToPath(new URL("../../job/bin.js", import.meta.url));
    try {
      const child = spawn(process.execPath, [bin, "restore", "--to", target, "--force"], {
        env: { ...process.env, R2_WORKER_URL: proxy.url, SERVER_BYPASS_TOKEN: t.bucket.worker.bindings.SERVER_BYPASS_TOKEN! },
        stdio: "ignore",
      });
      const exited = new Promise<NodeJS.Signals | null>((r) => child.on("exit", (_code, signal) => r(signal)));
      let temp: string | undefined;
      for (let i = 0; i < 600 && !temp; i++) {
        await new Promise((r) => setTimeout(r, 50));
        temp = (await readdir(t.dir)).find((f) => f.includes(".restore-"));
      }
      expect(temp).toMatch(/^\.live\.db\.restore-\d+-[0-9a-f]+\.tmp$/);
      child.kill("SIGKILL");
      expect(await exited).toBe("SIGKILL");
    } finally {
      await proxy.close();
    }
    expect(await fileSha256(target)).toBe(targetSha);

    const again = await restore({ store: t.bucket.store, to: target, force: true });

    expect(again.removedStale).toHaveLength(1);
    expect(again.removedStale[0]).toContain(".live.db.restore-");
    expect(dumpDatabase(target)).toEqual(expected);
    expect((await readdir(t.dir)).filter((f) => f.includes(".restore-"))).toEqual([]);
  });
});

describe("a documents archive", () => {
  it("with an entry that climbs out of the target fails, and nothing is written outside it or replaced", async () => {
    const src = source(30);
    const pack = tar.pack();
    pack.entry({ name: "ok.md" }, "fine");
    pack.entry({ name: "../evil.md" }, "escaped");
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
    await uploadFull(t.bucket.store, "20260105T060000Z", [src], { documentsTar: new Uint8Array(Buffer.concat(chunks)) });
    const docs = join(t.dir, "docs");

    const e = await failure(restore({ store: t.bucket.store, to: target, force: true, documentsTo: docs }));

    expect(e.kind).toBe("integrity");
    expect(e.message).toContain("'../evil.md': not a plain relative path");
    await expectTargetUntouched();
    expect((await readdir(t.dir)).filter((f) => f.includes("evil") || f === "docs")).toEqual([]);
  });
});

describe("a target that appears while the restore runs", () => {
  it("without --force it is left untouched (the replace checks again, atomically) and nothing is left behind", async () => {
    await uploadFull(t.bucket.store, "20260105T000000Z", [source(100)]);
    const late = join(t.dir, "late.db");
    for (const phase of ["download", "replace"] as const) {
      let written = false;
      const e = await failure(
        restore({
          store: t.bucket.store,
          to: late,
          onProgress: (p) => {
            // Another process creates the file after the start's check.
            if (p.phase === phase && !written) {
              written = true;
              writeFileSync(late, "another process's data");
            }
          },
        }),
      );
      expect(written).toBe(true);
      expect(e.kind).toBe("targetExists");
      expect(e.message).toMatch(/appeared while the restore ran/);
      expect(readFileSync(late, "utf8")).toBe("another process's data");
      expect((await readdir(t.dir)).filter((f) => f.includes(".restore-"))).toEqual([]);
      rmSync(late);
    }
  });

  it("with --force a target that appeared is replaced, as asked", async () => {
    await uploadFull(t.bucket.store, "20260105T000000Z", [source(100)]);
    const late = join(t.dir, "late.db");
    const r = await restore({ store: t.bucket.store, to: late, force: true, onProgress: (p) => p.phase === "replace" && writeFileSync(late, "old") });
    expect(r.full.id).toBe("20260105T000000Z");
    expect(readFileSync(late).subarray(0, 15).toString()).toBe("SQLite format 3");
  });
});

describe("a target an app holds open", () => {
  /** The app: another process with the database open in WAL mode, its last commits still in its -wal. */
  async function startApp(path: string) {
    const script = [
      "const { DatabaseSync } = require('node:sqlite');",
      `const db = new DatabaseSync(${JSON.stringify(path)});`,
      "db.exec('PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE IF NOT EXISTS app_work (n INTEGER)');",
      "db.exec('INSERT INTO app_work VALUES (1), (2), (3)');",
      "process.stdout.write('ready\\n');",
      "setInterval(() => {}, 1000);",
    ].join("\n");
    const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
      child.on("exit", (code) => reject(new Error(`the app exited with ${code}`)));
    });
    return child;
  }

  it("is refused even with --force, naming the process, before anything is downloaded; the app's work stays; once it stops, the restore replaces it", async () => {
    const src = source(60);
    const expected = dumpDatabase(src.path);
    await uploadFull(t.bucket.store, "20260105T000000Z", [src]);
    const app = await startApp(target);
    const walSha = await fileSha256(`${target}-wal`);
    const phases: string[] = [];
    try {
      const e = await failure(restore({ store: t.bucket.store, to: target, force: true, onProgress: (p) => phases.push(p.phase) }));
      expect(e.kind).toBe("targetExists");
      expect(e.exitCode).toBe(10);
      // The program, not its arguments (a command line may carry a secret).
      expect(e.message).toContain(`process ${app.pid} (node) has`);
      expect(e.message).not.toContain("DatabaseSync");
      expect(e.detail).toMatch(/\) has 'live\.db', 'live\.db-wal', 'live\.db-shm' open$/);
      expect(e.hint).toMatch(/stop the app/);
      expect(phases).not.toContain("download");
      // The app's database and its uncheckpointed commits are as they were.
      expect(await fileSha256(target)).toBe(targetSha);
      expect(await fileSha256(`${target}-wal`)).toBe(walSha);
      expect((await readdir(t.dir)).filter((f) => f.includes(".restore-"))).toEqual([]);
    } finally {
      const exited = new Promise((r) => app.on("exit", r));
      app.kill("SIGTERM");
      await exited;
    }
    const r = await restore({ store: t.bucket.store, to: target, force: true });
    expect(r.full.id).toBe("20260105T000000Z");
    expect(dumpDatabase(target)).toEqual(expected);
  });

  it("through a hard link under another name is refused too, naming the target", async () => {
    await uploadFull(t.bucket.store, "20260105T000000Z", [source(60)]);
    const alias = join(t.dir, "alias.db");
    linkSync(target, alias);
    const app = await startApp(alias);
    try {
      const e = await failure(restore({ store: t.bucket.store, to: target, force: true }));
      expect(e.kind).toBe("targetExists");
      expect(e.message).toContain(`process ${app.pid} (node) has 'live.db' open`);
      expect(await fileSha256(alias)).toBe(await fileSha256(target));
    } finally {
      const exited = new Promise((r) => app.on("exit", r));
      app.kill("SIGTERM");
      await exited;
    }
  });

  it("that opened it while the restore downloaded is refused at the replace, and nothing is changed", async () => {
    const src = source(60);
    await uploadFull(t.bucket.store, "20260105T000000Z", [src]);
    const e = await restoreOpenedMidway({ to: target, force: true }, target);
    expect(e.kind).toBe("targetExists");
    expect(e.message).toContain(`this process (${process.pid}) has 'live.db' open`);
    await expectTargetUntouched();
  });
});

describe("a restore of several databases", () => {
  /** A full backup of two databases, `one` and `two`, with this many events each. */
  async function uploadTwo(eventsOne: number, eventsTwo: number): Promise<void> {
    const one = { source: "one", path: join(t.dir, "one.src.db") };
    const two = { source: "two", path: join(t.dir, "two.src.db") };
    appendDemoEvents(one.path, eventsOne, 1);
    appendDemoEvents(two.path, eventsTwo, 2);
    await uploadFull(t.bucket.store, "20260105T000000Z", [one, two]);
  }

  it("to a new path named like one database file is a usage error, and nothing is made there", async () => {
    await uploadTwo(5, 5);
    const e = await failure(restore({ store: t.bucket.store, to: join(t.dir, "multi.db") }));
    expect(e.kind).toBe("usage");
    expect(e.detail).toMatch(/holds 2 databases \(one, two\) and this names a database file$/);
    expect(e.hint).toBe("give a directory to restore them all, or pick one with --source <name>");
    expect((await readdir(t.dir)).filter((f) => f.startsWith("multi"))).toEqual([]);
    const r = await restore({ store: t.bucket.store, to: join(t.dir, "multi") });
    expect(r.targets.map((x) => x.path)).toEqual([join(t.dir, "multi", "one.db"), join(t.dir, "multi", "two.db")]);
  });

  it("that one of them is opened in during the download changes none of them", async () => {
    await uploadTwo(20, 30);
    const data = join(t.dir, "data");
    mkdirSync(data);
    appendDemoEvents(join(data, "one.db"), 5, 7);
    appendDemoEvents(join(data, "two.db"), 5, 8);
    const before = [await fileSha256(join(data, "one.db")), await fileSha256(join(data, "two.db"))];
    const e = await restoreOpenedMidway({ dataDir: data, force: true }, join(data, "two.db"));
    expect(e.kind).toBe("targetExists");
    expect(e.detail).toMatch(/this process \(\d+\) has 'two\.db' open$/);
    expect([await fileSha256(join(data, "one.db")), await fileSha256(join(data, "two.db"))]).toEqual(before);
  });
});

describe("a target path through a file", () => {
  it("is a usage error naming the file, for --to and --data-dir, with nothing written", async () => {
    await uploadFull(t.bucket.store, "20260105T000000Z", [source(20)]);
    const file = join(t.dir, "notes.txt");
    writeFileSync(file, "a file, not a directory");
    for (const options of [{ to: join(file, "x.db") }, { to: join(file, "deeper", "x.db") }, { dataDir: file }, { dataDir: join(file, "data") }]) {
      const e = await failure(restore({ store: t.bucket.store, ...options }));
      expect(e.kind).toBe("usage");
      expect(e.detail).toMatch(new RegExp(`'${file}' is a file, not a directory$`));
      expect(e.hint).toMatch(/^nothing was changed; give --(to|data-dir)/);
      expect(readFileSync(file, "utf8")).toBe("a file, not a directory");
    }
  });
});

describe("a target that is a symbolic link", () => {
  it("replaces the database the link points to and keeps the link (also a link to a file not there yet)", async () => {
    const src = source(40);
    await uploadFull(t.bucket.store, "20260105T000000Z", [src]);
    const link = join(t.dir, "current.db");
    symlinkSync("live.db", link);
    const r = await restore({ store: t.bucket.store, to: link, force: true });
    expect(r.targets.map((x) => x.path)).toEqual([target]);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(dumpDatabase(target)).toEqual(dumpDatabase(src.path));

    const dangling = join(t.dir, "next.db");
    symlinkSync(join(t.dir, "new", "app.db"), dangling);
    mkdirSync(join(t.dir, "new"));
    await restore({ store: t.bucket.store, to: dangling });
    expect(lstatSync(dangling).isSymbolicLink()).toBe(true);
    expect(dumpDatabase(join(t.dir, "new", "app.db"))).toEqual(dumpDatabase(src.path));

    // A relative link with '..' inside a linked directory is read as the kernel reads it.
    mkdirSync(join(t.dir, "mnt", "vol", "data"), { recursive: true });
    mkdirSync(join(t.dir, "mnt", "vol", "shared"));
    symlinkSync(join("mnt", "vol", "data"), join(t.dir, "data"));
    symlinkSync(join("..", "shared", "app.db"), join(t.dir, "mnt", "vol", "data", "app.db"));
    const r2 = await restore({ store: t.bucket.store, to: join(t.dir, "data", "app.db") });
    expect(r2.targets.map((x) => x.path)).toEqual([join(t.dir, "mnt", "vol", "shared", "app.db")]);
    expect(dumpDatabase(join(t.dir, "mnt", "vol", "shared", "app.db"))).toEqual(dumpDatabase(src.path));
  });
});
