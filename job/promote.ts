import { createHash } from "node:crypto";
import { fileKey, formatBackupKey, manifestKey, promoteManifest, serializeManifest, type Manifest } from "../core/index.ts";
import { JobError } from "./errors.ts";
import { readStoredObject } from "./restore/download.ts";
import type { BackupStore } from "./store/types.ts";
import { StreamUpload, partSizeFor, uploadFile } from "./upload.ts";

/**
 * The daily copy (`backups/daily/<day>/`), resumable. Daily objects are write-once (and under the bucket
 * lock), so a promotion that failed half-way cannot be redone with another full backup's bytes: the day's
 * pointer `backups/state/daily-<day>.json` names the full backup being promoted, and the next run finishes
 * that one, skipping each object already there with the right size and sha256, copying the rest, and
 * writing the daily manifest last.
 */

/** The state key that names which full backup a day's daily copy is being made from. */
export function dailyPointerKey(day: string): string {
  return formatBackupKey({ kind: "state", name: `daily-${day}.json` });
}

/** The full backup a day's unfinished promotion started from, if a pointer says so. */
export async function unfinishedPromotion(store: BackupStore, day: string): Promise<string | undefined> {
  const got = await store.get(dailyPointerKey(day));
  if (!got) return undefined;
  try {
    const value = JSON.parse(await new Response(got.body).text()) as { from?: unknown };
    return typeof value.from === "string" ? value.from : undefined;
  } catch {
    return undefined;
  }
}

export interface PromoteOptions {
  store: BackupStore;
  /** The full backup to copy (its manifest). */
  full: Manifest;
  /** Local compressed copies of its files (the run that just took it), by file name; else they are streamed from full/. */
  localCopies?: ReadonlyMap<string, { path: string; sha256: string; size: number; contentType: string }>;
  partBytes?: number;
}

/** Copies a full backup to `daily/<day>/`, resuming a copy that stopped half-way. Returns the day and what it did. */
export async function promoteToDaily(options: PromoteOptions): Promise<{ day: string; copied: string[]; kept: string[] }> {
  const { store, full } = options;
  const { day, manifest } = promoteManifest(full);
  await store.put(dailyPointerKey(day), JSON.stringify({ day, from: full.id }), { contentType: "application/json" });
  const copied: string[] = [];
  const kept: string[] = [];
  for (const f of full.files) {
    const key = fileKey("daily", day, f.name);
    const there = await store.head(key);
    if (there) {
      if (there.size !== f.size || (there.sha256 !== undefined && there.sha256 !== f.sha256)) {
        throw new JobError("integrity", `promote '${key}': it already holds other bytes (${there.size} bytes) than ${full.id}'s ${f.name} (${f.size} bytes)`, {
          hint: "daily objects are write-once; this day keeps no daily copy, the full backups themselves are complete",
        });
      }
      kept.push(f.name);
      continue;
    }
    const local = options.localCopies?.get(f.name);
    const partBytes = partSizeFor(f.size, options.partBytes);
    if (local) {
      await uploadFile(store, key, local.path, local.sha256, { size: local.size, contentType: local.contentType, partBytes });
    } else {
      // Not on this machine: stream it from the full backup's own object (resumed with Range when cut), and
      // check its sha256 before the copy is completed.
      const source = fileKey("full", full.id, f.name);
      const upload = new StreamUpload(store, key, { partBytes, contentType: "application/zstd" });
      const hash = createHash("sha256");
      try {
        for await (const chunk of readStoredObject(store, source, f.size, { onChunk: (c) => hash.update(c) })) await upload.write(chunk);
        const sha = hash.digest("hex");
        if (sha !== f.sha256) throw new JobError("integrity", `promote '${key}': '${source}' read back with sha256 ${sha}, the manifest says ${f.sha256}`);
        await upload.finish(sha);
      } catch (e) {
        await upload.abort();
        throw e;
      }
    }
    copied.push(f.name);
  }
  const text = serializeManifest(manifest);
  // LAST: the day's daily copy is complete.
  await store.put(manifestKey("daily", day), text, { sha256: createHash("sha256").update(text).digest("hex"), contentType: "application/json" });
  return { day, copied, kept };
}
