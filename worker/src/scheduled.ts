import type { ApiStatus } from "../../core/api.ts";
import { catalogFromKeys, type Catalog, type CatalogSet } from "../../core/catalog.ts";
import { MANIFEST_FILE, PREFIXES } from "../../core/keys.ts";
import { summarizeStatus } from "../../core/status.ts";
import type { Env } from "./env.ts";
import { HttpError, describeError } from "./errors.ts";
import { listAllKeys } from "./r2.ts";

/** The freshness limit when `MAX_BACKUP_AGE_HOURS` is not set: one missed 6-hourly run, as the alarms. */
export const DEFAULT_MAX_BACKUP_AGE_HOURS = 7;

/** `MAX_BACKUP_AGE_HOURS` as a number; a value that is set but not a positive number is a 500. */
export function maxBackupAgeHours(env: Env): number {
  const raw = env.MAX_BACKUP_AGE_HOURS;
  if (raw === undefined || String(raw).trim() === "") return DEFAULT_MAX_BACKUP_AGE_HOURS;
  const hours = Number(raw);
  if (!Number.isFinite(hours) || hours <= 0) {
    throw new HttpError(500, "misconfigured", `read variable 'MAX_BACKUP_AGE_HOURS' '${String(raw).slice(0, 40)}': expected a positive number of hours`);
  }
  return hours;
}

/** Every key of the catalog's areas (state/ is left out: it holds no backups). */
export async function catalogOf(bucket: R2Bucket): Promise<Catalog> {
  const areas = [PREFIXES.full, PREFIXES.incremental, PREFIXES.daily, PREFIXES.drills];
  const keys = (await Promise.all(areas.map((prefix) => listAllKeys(bucket, prefix)))).flat();
  return catalogFromKeys(keys);
}

/** The prefix of a catalog set, e.g. `backups/full/20260131T060000Z/`. */
function setPrefix(set: CatalogSet): string {
  return `${PREFIXES[set.kind]}${set.id}/`;
}

/** The complete sets of the primary whose manifest the replica lacks, oldest first. */
export function missingFromReplica(primary: Catalog, replica: Catalog): CatalogSet[] {
  const present = new Set(
    [...replica.full, ...replica.incremental, ...replica.daily].filter((s) => s.complete).map(setPrefix),
  );
  return [...primary.full, ...primary.incremental, ...primary.daily].filter((s) => s.complete && !present.has(setPrefix(s)));
}

/**
 * `GET /api/status`: the newest complete full, incremental, daily and drill, their ages and `healthy`
 * (from core's `summarizeStatus`), plus the replica's lag when a replica bucket is bound.
 */
export async function backupStatus(env: Env, now: Date): Promise<ApiStatus> {
  const hours = maxBackupAgeHours(env);
  const catalog = await catalogOf(env.BACKUP_BUCKET);
  const status = summarizeStatus(catalog, now, hours);
  if (env.BACKUP_REPLICA_BUCKET) {
    const missing = missingFromReplica(catalog, await catalogOf(env.BACKUP_REPLICA_BUCKET)).map(setPrefix);
    status.replica = { lag: missing.length, missing };
  }
  return status;
}

/** The alert the dead-man's switch posts: `text` for chat webhooks (Slack, Mattermost), `status` for machines. */
export function alertPayload(status: ApiStatus): { text: string; status: ApiStatus } {
  return { text: `r2-sqlite-backup: backups are stale: ${status.problems.join("; ")}`, status };
}

/**
 * The cron trigger: copies what the replica lacks (when bound), then checks freshness and, when the
 * newest complete full backup is older than `MAX_BACKUP_AGE_HOURS` (or there is none), posts an alert to
 * `ALERT_WEBHOOK_URL`. Healthy: it posts nothing. Failures are thrown so the cron run shows as failed.
 */
export async function runScheduled(env: Env, now: Date): Promise<{ status: ApiStatus; alerted: boolean; copied: string[] }> {
  let copied: string[] = [];
  let replicaError: unknown;
  if (env.BACKUP_REPLICA_BUCKET) {
    try {
      copied = await replicate(env.BACKUP_BUCKET, env.BACKUP_REPLICA_BUCKET);
    } catch (error) {
      replicaError = error;
    }
  }
  const status = await backupStatus(env, now);
  let alerted = false;
  if (!status.healthy) {
    const url = env.ALERT_WEBHOOK_URL;
    if (url) {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(alertPayload(status)),
      });
      await response.body?.cancel();
      if (!response.ok) throw new Error(`post alert to ALERT_WEBHOOK_URL: the webhook answered ${response.status}`);
      alerted = true;
    } else {
      console.warn(`backups are stale and ALERT_WEBHOOK_URL is not set: ${status.problems.join("; ")}`);
    }
  }
  if (replicaError !== undefined) throw new Error(`replicate backups: ${describeError(replicaError)}`);
  return { status, alerted, copied };
}

/**
 * Objects up to one part are copied with one put; larger ones part by part, one ranged get per part, so
 * no single put nears R2's 5 GiB limit and each read stays bounded (as the API's windowed reads).
 */
const COPY_PART_BYTES = 64 * 1024 * 1024;
const COPY_SINGLE_PUT_BYTES = COPY_PART_BYTES;

/**
 * Copies every complete backup set the replica lacks, oldest first, each set's files streamed and its
 * manifest last, so the replica never shows an incomplete set as complete. Returns the copied prefixes.
 */
export async function replicate(primary: R2Bucket, replica: R2Bucket): Promise<string[]> {
  const missing = missingFromReplica(await catalogOf(primary), await catalogOf(replica));
  const copied: string[] = [];
  for (const set of missing) {
    const prefix = setPrefix(set);
    const files = [...set.files.filter((f) => f !== MANIFEST_FILE), MANIFEST_FILE];
    for (const file of files) await copyObject(primary, replica, `${prefix}${file}`);
    copied.push(prefix);
  }
  return copied;
}

/** Streams one object from a bucket to another, keeping its content type and stored SHA-256. */
export async function copyObject(from: R2Bucket, to: R2Bucket, key: string): Promise<void> {
  const head = await from.head(key);
  if (head === null) throw new Error(`copy backup key '${key}': it vanished from the primary bucket`);
  const existing = await to.head(key);
  if (existing !== null && existing.size === head.size) return; // a previous run copied it
  const httpMetadata = head.httpMetadata ?? {};
  if (head.size <= COPY_SINGLE_PUT_BYTES) {
    const object = await from.get(key, { onlyIf: { etagMatches: head.etag } });
    if (object === null || !("body" in object)) throw new Error(`copy backup key '${key}': it changed during the copy`);
    const sha = head.checksums.sha256;
    const put: R2PutOptions = { httpMetadata, ...(sha ? { sha256: sha } : {}) };
    await to.put(key, withLength(object.body, head.size), put);
    return;
  }
  const upload = await to.createMultipartUpload(key, { httpMetadata });
  try {
    const parts: R2UploadedPart[] = [];
    for (let offset = 0, n = 1; offset < head.size; offset += COPY_PART_BYTES, n++) {
      const length = Math.min(COPY_PART_BYTES, head.size - offset);
      const object = await from.get(key, { range: { offset, length }, onlyIf: { etagMatches: head.etag } });
      if (object === null || !("body" in object)) throw new Error(`copy backup key '${key}': it changed during the copy`);
      parts.push(await upload.uploadPart(n, withLength(object.body, length)));
    }
    await upload.complete(parts);
  } catch (error) {
    await upload.abort().catch(() => undefined);
    throw error;
  }
}

/** A stream R2 accepts as of known length (it refuses plain streams): the readable half of a FixedLengthStream. */
function withLength(body: ReadableStream, length: number): ReadableStream {
  const { readable, writable } = new FixedLengthStream(length);
  body.pipeTo(writable).catch(() => undefined);
  return readable;
}
