import { catalogFromKeys, missingFromReplica, setPrefix, type Catalog } from "../../core/catalog.ts";
import { MANIFEST_FILE, PREFIXES } from "../../core/keys.ts";
import { mirrorChain } from "./chain.ts";
import { listAllKeys } from "./r2.ts";

/**
 * The replica copy (docs/design.md, "Replica and failover"): every complete backup set that
 * `BACKUP_REPLICA_BUCKET` lacks is copied out of `BACKUP_BUCKET`, oldest first, each set's files before its
 * manifest. It is bounded per cron invocation and resumes where the last one stopped:
 * - a cron invocation has 30 s of CPU when its interval is under an hour (15 min otherwise) and, on Workers
 *   Paid, 1,000 subrequests (10,000 on the newest limits page); every R2 binding call is one
 *   (/work/shared/reference/r2-workers-sqlite.md, section 1). A part costs 3 (ranged get, uploadPart,
 *   progress put), so a run copies at most `REPLICA_COPY_PARTS_PER_RUN` parts (default 64: 4 GiB, ~200
 *   subrequests) and starts no part after its time budget;
 * - a multipart upload outlives the invocation: its id and the etags of the parts done are kept in the
 *   destination at `backups/state/replica-copy/<kind>/<id>/<file>.json` (state/ is the only overwritable
 *   area), and the next run resumes it with `resumeMultipartUpload` (the binding cannot list parts);
 * - a set's manifest is copied only after every other file of it is complete, so the destination never
 *   shows a set complete before its data is all there.
 */

/** Default size of a copied part: parts of equal size, 5 MiB to 5 GiB (R2 multipart rules). */
export const DEFAULT_COPY_PART_BYTES = 64 * 1024 * 1024;
/** Default number of parts (or single puts) one run copies: ~3 subrequests each, far below 1,000. */
export const DEFAULT_COPY_PARTS_PER_RUN = 64;
/** Default wall-time budget of a run: no new part starts after it (the cron's CPU limit is 30 s, I/O is not CPU). */
export const DEFAULT_COPY_TIME_BUDGET_MS = 10 * 60 * 1000;
const MIN_PART_BYTES = 5 * 1024 * 1024;

/** How much one run may copy. */
export interface CopyBudget {
  partBytes: number;
  maxParts: number;
  /** Epoch milliseconds after which no new part starts. */
  deadline: number;
}

/** What one run did: the sets it completed, and the object it stopped in when the budget ran out. */
export interface ReplicationRun {
  copied: string[];
  /** Complete sets the destination still lacks after this run. */
  remaining: number;
  /** The object a later run resumes, with its parts done so far. */
  resumeAt?: { key: string; partsDone: number; partsTotal: number };
}

/** The areas that hold backup sets and drills (state/ is left out: it holds no backups). */
export async function catalogOf(bucket: R2Bucket): Promise<Catalog> {
  const areas = [PREFIXES.full, PREFIXES.incremental, PREFIXES.daily, PREFIXES.drills];
  const keys = (await Promise.all(areas.map((prefix) => listAllKeys(bucket, prefix)))).flat();
  return catalogFromKeys(keys);
}

/** The drill records of the source the destination lacks (single objects, copied with the sets). */
function missingDrills(primary: Catalog, replica: Catalog): string[] {
  const present = new Set([...replica.drills, ...replica.failedDrills.map((d) => `${d}.failed`)]);
  return [...primary.drills, ...primary.failedDrills.map((d) => `${d}.failed`)].filter((d) => !present.has(d)).map((d) => `${PREFIXES.drills}${d}.json`);
}

/** The budget from the Worker's variables, each optional (a bad value falls back to the default). */
export function copyBudget(vars: { REPLICA_COPY_PART_MIB?: string; REPLICA_COPY_PARTS_PER_RUN?: string; REPLICA_COPY_TIME_BUDGET_SECONDS?: string }, now: number): CopyBudget {
  const num = (raw: string | undefined, fallback: number, min: number) => {
    const n = Number(raw);
    return raw !== undefined && raw !== "" && Number.isFinite(n) && n >= min ? n : fallback;
  };
  const partBytes = Math.max(MIN_PART_BYTES, Math.round(num(vars.REPLICA_COPY_PART_MIB, DEFAULT_COPY_PART_BYTES / 1048576, 5) * 1048576));
  return {
    partBytes,
    maxParts: Math.floor(num(vars.REPLICA_COPY_PARTS_PER_RUN, DEFAULT_COPY_PARTS_PER_RUN, 1)),
    deadline: now + num(vars.REPLICA_COPY_TIME_BUDGET_SECONDS, DEFAULT_COPY_TIME_BUDGET_MS / 1000, 0) * 1000,
  };
}

/**
 * Copies what the destination lacks until the budget runs out: complete sets oldest first (files, then
 * the manifest), then missing drill records. A run that stops inside an object leaves its upload and
 * progress for the next run.
 */
export async function replicate(from: R2Bucket, to: R2Bucket, budget: CopyBudget): Promise<ReplicationRun> {
  const source = await catalogOf(from);
  const destination = await catalogOf(to);
  const missing = missingFromReplica(source, destination);
  const meter = { parts: 0, budget };
  const copied: string[] = [];
  // The destination's chain index follows the source's, up to the newest set the destination holds complete.
  const held = new Set([...destination.full, ...destination.incremental].filter((s) => s.complete).map(setPrefix));
  const index = () => mirrorChain(from, to, (e) => held.has(`${PREFIXES[e.kind]}${e.id}/`));
  for (const set of missing) {
    const prefix = setPrefix(set);
    const files = [...set.files.filter((f) => f !== MANIFEST_FILE), MANIFEST_FILE];
    for (const file of files) {
      const stopped = await copyObject(from, to, `${prefix}${file}`, meter);
      if (stopped) {
        await index();
        return { copied, remaining: missing.length - copied.length, resumeAt: stopped };
      }
    }
    copied.push(prefix);
    held.add(prefix);
  }
  await index();
  for (const key of missingDrills(source, destination)) {
    const stopped = await copyObject(from, to, key, meter);
    if (stopped) break;
  }
  return { copied, remaining: missing.length - copied.length };
}

interface Meter {
  parts: number;
  budget: CopyBudget;
}

/** Takes one part from the budget, or says the run must stop here. */
function take(meter: Meter): boolean {
  if (meter.parts >= meter.budget.maxParts || Date.now() >= meter.budget.deadline) return false;
  meter.parts++;
  return true;
}

/** The progress of a multipart copy, kept in the destination between runs. */
interface CopyProgress {
  key: string;
  uploadId: string;
  /** The source object copied: a changed etag (never expected: backups are write-once) restarts the copy. */
  etag: string;
  size: number;
  partBytes: number;
  parts: R2UploadedPart[];
  /** Runs in a row that failed on this upload; at MAX_COPY_FAILURES it starts over (the upload may be gone). */
  failures?: number;
}

/** An upload that failed this many runs in a row (aborted by the lifecycle rule after a day, say) starts over. */
const MAX_COPY_FAILURES = 3;

/** Where the progress of copying `key` is kept (under state/, the only overwritable area). */
export function progressKey(key: string): string {
  return `${PREFIXES.state}replica-copy/${key.slice("backups/".length)}.json`;
}

/**
 * Streams one object into the destination, keeping its content type and stored SHA-256: one put up to a
 * part, else part by part (one ranged get each, so memory stays bounded), resuming a multipart copy an
 * earlier run started. Returns where it stopped when the budget ran out, or undefined once the object is there.
 */
export async function copyObject(from: R2Bucket, to: R2Bucket, key: string, meter: Meter): Promise<ReplicationRun["resumeAt"]> {
  const head = await from.head(key);
  if (head === null) throw new Error(`copy backup key '${key}': it vanished from the source bucket`);
  const existing = await to.head(key);
  if (existing !== null && existing.size === head.size) return undefined; // a previous run copied it
  const httpMetadata = head.httpMetadata ?? {};
  const stateKey = progressKey(key);
  let progress = await readProgress(to, stateKey);
  if (progress && (progress.etag !== head.etag || progress.size !== head.size)) {
    await to
      .resumeMultipartUpload(key, progress.uploadId)
      .abort()
      .catch(() => undefined);
    progress = undefined;
  }
  const partBytes = progress?.partBytes ?? meter.budget.partBytes;
  if (!progress && head.size <= partBytes) {
    // A manifest is never held back: it is small, and it is what completes a set whose data is all there.
    if (!key.endsWith(`/${MANIFEST_FILE}`) && !take(meter)) return { key, partsDone: 0, partsTotal: 1 };
    const object = await from.get(key, { onlyIf: { etagMatches: head.etag } });
    if (object === null || !("body" in object)) throw new Error(`copy backup key '${key}': it changed during the copy`);
    const sha = head.checksums.sha256;
    // R2 checks the copy against the SHA-256 it stored for the original.
    await to.put(key, withLength(object.body, head.size), { httpMetadata, ...(sha ? { sha256: sha } : {}) });
    return undefined;
  }
  const total = Math.ceil(head.size / partBytes);
  let upload: R2MultipartUpload;
  if (progress) {
    upload = to.resumeMultipartUpload(key, progress.uploadId);
  } else {
    if (!take(meter)) return { key, partsDone: 0, partsTotal: total };
    meter.parts--; // creating the upload is not a part; the check above only keeps an empty run from starting one
    upload = await to.createMultipartUpload(key, { httpMetadata });
    progress = { key, uploadId: upload.uploadId, etag: head.etag, size: head.size, partBytes, parts: [] };
    await writeProgress(to, stateKey, progress);
  }
  try {
    for (let n = progress.parts.length + 1; n <= total; n++) {
      if (!take(meter)) return { key, partsDone: progress.parts.length, partsTotal: total };
      const offset = (n - 1) * partBytes;
      const length = Math.min(partBytes, head.size - offset);
      const object = await from.get(key, { range: { offset, length }, onlyIf: { etagMatches: head.etag } });
      if (object === null || !("body" in object)) throw new Error(`copy backup key '${key}': it changed during the copy`);
      progress.parts.push(await upload.uploadPart(n, withLength(object.body, length)));
      delete progress.failures;
      await writeProgress(to, stateKey, progress);
    }
    await upload.complete(progress.parts);
  } catch (error) {
    // A passing failure resumes next run; an upload that keeps failing (gone, refused) starts over.
    const failures = (progress.failures ?? 0) + 1;
    if (failures >= MAX_COPY_FAILURES) {
      await to.delete(stateKey);
      await upload.abort().catch(() => undefined);
    } else {
      await writeProgress(to, stateKey, { ...progress, failures }).catch(() => undefined);
    }
    throw error;
  }
  await to.delete(stateKey);
  return undefined;
}

async function readProgress(bucket: R2Bucket, key: string): Promise<CopyProgress | undefined> {
  const object = await bucket.get(key);
  if (object === null) return undefined;
  try {
    return (await object.json()) as CopyProgress;
  } catch {
    return undefined;
  }
}

async function writeProgress(bucket: R2Bucket, key: string, progress: CopyProgress): Promise<void> {
  await bucket.put(key, JSON.stringify(progress), { httpMetadata: { contentType: "application/json" } });
}

/** A stream R2 accepts as of known length (it refuses plain streams): the readable half of a FixedLengthStream. */
function withLength(body: ReadableStream, length: number): ReadableStream {
  const { readable, writable } = new FixedLengthStream(length);
  body.pipeTo(writable).catch(() => undefined);
  return readable;
}
