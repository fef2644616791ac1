import { readdir } from "node:fs/promises";
import { Worker } from "node:worker_threads";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { appendDemoEvents } from "../../bench/livestore-db.ts";
import { backup } from "../../job/backup.ts";
import { JobError } from "../../job/errors.ts";
import { restore, verify } from "../../job/restore/index.ts";
import { addRandomBlob, holdParts, verifyAllComplete } from "./backup-fixtures.ts";
import { useTestBucket } from "./bucket.ts";
import { fileSha256 } from "./restore-fixtures.ts";

/**
 * The library's AbortSignal (`backup`, `restore`, `verify` take `signal`): stopped between steps, each rejects
 * with the `interrupted` JobError (exit 130) and leaves nothing that looks complete. The store here has no
 * signal of its own, so what stops the work is the library's own checkpoints.
 */
const t = useTestBucket("abort-");
const interrupted = (e: unknown) => e instanceof JobError && e.kind === "interrupted" && e.exitCode === 130;

describe("AbortSignal through the library", () => {
  it("backup() aborted during its upload rejects as interrupted, aborts the upload and writes no manifest", async () => {
    const db = join(t.dir, "app.db");
    appendDemoEvents(db, 2000, 1);
    addRandomBlob(db, 24 * 1024 * 1024); // several multipart parts
    const controller = new AbortController();
    const work = join(t.dir, "work");
    const run = backup({
      store: t.bucket.store,
      databases: [{ path: db, source: "app" }],
      kind: "full",
      tmpDir: work,
      lockFile: false,
      partBytes: 5 * 1024 * 1024,
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === "progress" && e.phase === "upload" && (e.bytes ?? 0) > 0) controller.abort();
      },
    });
    await expect(run).rejects.toSatisfy(interrupted);
    const sets = await verifyAllComplete(t.bucket.store);
    expect([...sets.full, ...sets.incremental, ...sets.daily]).toEqual([]);
    expect((await readdir(work)).filter((f) => f.startsWith("r2backup-work-"))).toEqual([]);
  });

  it("backup() aborted once its database is read, while its first parts are held: no further part starts, the upload is aborted, no manifest", async () => {
    const db = join(t.dir, "late.db");
    appendDemoEvents(db, 2000, 1);
    addRandomBlob(db, 24 * 1024 * 1024); // 5 parts of 5 MiB, 2 in flight at most
    const held = holdParts(t.bucket.store);
    const controller = new AbortController();
    let compressed!: () => void;
    const whenCompressed = new Promise<void>((resolve) => (compressed = resolve));
    const run = backup({
      store: held.store,
      databases: [{ path: db, source: "app" }],
      kind: "full",
      tmpDir: join(t.dir, "work-late"),
      lockFile: false,
      partBytes: 5 * 1024 * 1024,
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === "progress" && e.phase === "upload" && e.total !== undefined && e.bytes === e.total) compressed();
      },
    });
    await whenCompressed;
    expect(held.partsAsked()).toBe(2);
    controller.abort();
    held.open();
    await expect(run).rejects.toSatisfy(interrupted);
    expect(held.partsAsked()).toBe(2);
    const sets = await verifyAllComplete(t.bucket.store);
    expect([...sets.full, ...sets.incremental, ...sets.daily]).toEqual([]);
  });

  it("an in-process backup ends its pin of a WAL database whether it succeeds or is aborted: the app's log checkpoints whole after it", async () => {
    const db = join(t.dir, "pinned.db");
    appendDemoEvents(db, 2000, 1);
    addRandomBlob(db, 12 * 1024 * 1024);
    const app = new DatabaseSync(db, { timeout: 5_000 });
    try {
      expect(app.prepare("PRAGMA journal_mode").get()).toEqual({ journal_mode: "wal" });
      const checkpointAfterWrite = () => {
        app.exec("CREATE TABLE IF NOT EXISTS app_writes (x); INSERT INTO app_writes VALUES (1)");
        return app.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get();
      };
      const work = join(t.dir, "work");
      const options = { store: t.bucket.store, databases: [{ path: db, source: "app" }], kind: "full" as const, tmpDir: work, lockFile: false as const, promote: false };
      await backup(options);
      expect(checkpointAfterWrite()).toEqual({ busy: 0, log: 0, checkpointed: 0 });
      const controller = new AbortController();
      let pinnedWhileUploading: unknown;
      const run = backup({
        ...options,
        signal: controller.signal,
        onEvent: (e) => {
          if (e.type !== "progress" || e.phase !== "upload" || (e.bytes ?? 0) === 0 || pinnedWhileUploading) return;
          pinnedWhileUploading = checkpointAfterWrite(); // the pin holds the log back while the file is read
          controller.abort();
        },
      });
      await expect(run).rejects.toSatisfy(interrupted);
      expect(pinnedWhileUploading).toMatchObject({ busy: 1 });
      expect(checkpointAfterWrite()).toEqual({ busy: 0, log: 0, checkpointed: 0 });
    } finally {
      app.close();
    }
  });

  it("a backup on a worker thread terminated mid-way leaves its work dir; the next backup in the same process removes it", async () => {
    const db = join(t.dir, "threaded.db");
    appendDemoEvents(db, 2000, 1);
    addRandomBlob(db, 16 * 1024 * 1024);
    const work = join(t.dir, "work");
    const workDirs = async () => (await readdir(work).catch(() => [] as string[])).filter((f) => f.startsWith("r2backup-work-"));
    // The README's pattern: backup() on a thread of the app (here slowed by a CPU cap so it is terminated mid-way).
    const code = `
      const { workerData } = require("node:worker_threads");
      import(workerData.job).then(({ backup, HttpStore }) =>
        backup({ store: new HttpStore({ url: workerData.url, token: workerData.token }), databases: [{ path: workerData.db, source: "app" }],
          kind: "full", tmpDir: workerData.work, lockFile: false, promote: false, cpu: 0.05 }));`;
    const job = pathToFileURL(join(import.meta.dirname, "../../job/index.ts")).href;
    const thread = new Worker(code, { eval: true, workerData: { job, url: t.bucket.url, token: t.bucket.token, db, work } });
    thread.on("error", () => {});
    while ((await workDirs()).length === 0) await new Promise((r) => setTimeout(r, 5));
    await thread.terminate();
    const left = await workDirs();
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(new RegExp(`^r2backup-work-${process.pid}-s\\d+-t\\d+-`)); // this process, that thread
    // This process lives on; its next backup knows the thread is gone.
    const done = await backup({ store: t.bucket.store, databases: [{ path: db, source: "app" }], kind: "full", tmpDir: work, lockFile: false, promote: false });
    expect(done.ok).toBe(true);
    expect(await workDirs()).toEqual([]);
  });

  it("restore() aborted during its download rejects as interrupted and leaves the target as it was; verify() records no drill", async () => {
    const db = join(t.dir, "app.db");
    appendDemoEvents(db, 2000, 1);
    addRandomBlob(db, 8 * 1024 * 1024);
    await backup({ store: t.bucket.store, databases: [{ path: db, source: "app" }], kind: "full", tmpDir: join(t.dir, "work"), lockFile: false, promote: false });
    appendDemoEvents(db, 10, 2);
    await backup({ store: t.bucket.store, databases: [{ path: db, source: "app" }], kind: "incremental", tmpDir: join(t.dir, "work"), lockFile: false });
    const target = join(t.dir, "target.db");
    appendDemoEvents(target, 5, 9); // an existing database the restore would replace with --force
    const before = await fileSha256(target);

    for (const phase of ["download", "apply", "check"] as const) {
      const controller = new AbortController();
      const run = restore({ store: t.bucket.store, to: target, force: true, signal: controller.signal, onProgress: (p) => p.phase === phase && controller.abort() });
      await expect(run, phase).rejects.toSatisfy(interrupted);
      expect(await fileSha256(target), phase).toBe(before);
      expect(
        (await readdir(t.dir)).filter((f) => f.includes(".restore-")),
        phase,
      ).toEqual([]);
    }

    const controller = new AbortController();
    await expect(verify({ store: t.bucket.store, tmpDir: t.dir, signal: controller.signal, onProgress: () => controller.abort() })).rejects.toSatisfy(interrupted);
    expect(await t.bucket.store.listAll("backups/drills/")).toEqual([]);
  });
});
