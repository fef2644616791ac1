import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { DEFAULT_CHANGE_TABLES } from "../core/index.ts";
import { Pins } from "../job/pinned.ts";
import { DatabaseSync } from "node:sqlite";
import { checkSnapshot, patchUnderSharedLock, snapshotDatabase } from "../job/sqlite.ts";
import { HttpStore } from "../job/store/http-store.ts";
import { compressFile, compressStream, hashFile } from "../job/stream.ts";
import { uploadFile } from "../job/upload.ts";
import { round } from "./report.ts";

/** The chunks of `source`, hashed on the way (sha256) as the pipeline before 0.3 hashed its input. */
async function* hashed(source: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  const hash = createHash("sha256");
  for await (const chunk of source) {
    hash.update(chunk);
    yield chunk;
  }
  hash.digest("hex");
}

/** compressFile with its frames written to `to`, as the backup's upload spools them. */
async function writeCompressed(from: string, to: string, pins?: Pins): ReturnType<typeof compressFile> {
  const file = await open(to, "wx");
  try {
    let at = 0;
    return await compressFile(
      from,
      async (chunk) => {
        await file.write(chunk, 0, chunk.length, at);
        at += chunk.length;
      },
      pins ? { pins } : {},
    );
  } finally {
    await file.close();
  }
}

/**
 * The full backup's cost per stage (issue 16), in this process, on the same database: wall and CPU (all
 * threads, from process.cpuUsage) of each stage alone. "before" rows are the previous pipeline's stages
 * (a one-step copy to the temp disk, zstd level 3 in one stream), for the README's profile.
 */
export async function benchProfile(options: { dbPath: string; workerUrl: string; token: string; scratch: string }): Promise<Record<string, unknown>> {
  await mkdir(options.scratch, { recursive: true });
  const stages: { stage: string; wallMs: number; cpuMs: number; note?: string }[] = [];
  const measure = async <T>(stage: string, f: () => Promise<T>, note?: string): Promise<T> => {
    const t = performance.now();
    const u0 = process.cpuUsage();
    const r = await f();
    const u = process.cpuUsage(u0);
    stages.push({ stage, wallMs: Math.round(performance.now() - t), cpuMs: Math.round((u.user + u.system) / 1000), ...(note ? { note } : {}) });
    return r;
  };
  const copy = join(options.scratch, "copy.db");
  const pin = join(options.scratch, "pin.db");
  const zst = join(options.scratch, "db.zst");
  await rm(copy, { force: true });
  await rm(zst, { force: true });
  const none = async () => {};
  const pins = new Pins();
  try {
    await measure("snapshot: one-step copy to the temp disk (before)", () => snapshotDatabase(options.dbPath, copy));
    await measure("check: quick_check, row counts, watermarks (on the copy)", () => checkSnapshot(copy, DEFAULT_CHANGE_TABLES, { integrity: "quick" }));
    await measure("check: integrity_check instead (--integrity full)", () => checkSnapshot(copy, DEFAULT_CHANGE_TABLES, { integrity: "full" }));
    await measure("hash: sha256 of the snapshot alone (before 0.3 a backup hashed it too)", () => hashFile(copy));
    // A rollback-journal database a writer keeps busy is copied without a lock, then compared with the file under one
    // shared lock: the writer's one wait (job/sqlite.ts). The copy here is exact, so it is all compare, no rewrite.
    const live = new DatabaseSync(options.dbPath, { readOnly: true });
    try {
      await measure("snapshot, rollback journal: compare the copy with the file under the lock (the writer's one wait)", () => patchUnderSharedLock(live, options.dbPath, copy));
    } finally {
      live.close();
    }
    await measure("compress: zstd -3, one stream, with sha256 of both sides (before)", () =>
      compressStream(hashed(createReadStream(copy, { highWaterMark: 256 << 10 })), none, { level: 3 }),
    );
    await rm(copy, { force: true });
    await measure("snapshot: pin the WAL database (now)", () => snapshotDatabase(options.dbPath, pin, { pins }));
    await measure("check: quick_check, row counts, watermarks (on the pin)", () => checkSnapshot(pin, DEFAULT_CHANGE_TABLES, { integrity: "quick", pins }));
    const d = await measure(
      "compress + sha256 of the stored bytes: zstd -1 frames with their checksums, in parallel, one pass (now)",
      () => writeCompressed(pin, zst, pins),
      "writes the compressed copy too, as the backup spools it",
    );
    await measure("compress, capped: --cpu 0.5", () => compressFile(pin, none, { cpu: 0.5, pins }));
    pins.releaseAll();
    const store = new HttpStore({ url: options.workerUrl, token: options.token });
    await measure("upload: the compressed bytes to the local Worker", () => uploadFile(store, "backups/full/20010101T000000Z/profile.db.zst", zst, d.sha256, { size: d.size }));
    return {
      bench: "profile",
      sizeBytes: (await stat(options.dbPath)).size,
      storedBytes: d.size,
      stages: stages.map((s) => ({ ...s, cpuShare: round(s.cpuMs / Math.max(1, s.wallMs)) })),
    };
  } finally {
    pins.releaseAll();
    await rm(options.scratch, { recursive: true, force: true });
  }
}
