import type { ApiListing, ApiObject } from "../../core/api.ts";
import { isOverwritableKey } from "../../core/keys.ts";
import { HttpError, describeError } from "./errors.ts";

/**
 * The R2 adapter of the Worker: create-only puts, multipart, reads and listings, with R2's failures turned
 * into HttpErrors that say what happened (a checksum mismatch, an unknown upload) and everything else
 * left to the 500 handler.
 */

/** Lowercase hex of a checksum R2 returns. */
export function toHex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The stored SHA-256 of an object, when one was given at upload (single puts only). */
export function storedSha256(object: R2Object): string | undefined {
  const sha = object.checksums?.sha256;
  return sha ? toHex(sha) : undefined;
}

/** An object as the API describes it (`ApiObject`). */
export function describeObject(object: R2Object): ApiObject {
  const sha256 = storedSha256(object);
  return {
    key: object.key,
    size: object.size,
    etag: object.etag,
    uploaded: object.uploaded.toISOString(),
    ...(sha256 ? { sha256 } : {}),
  };
}

/** The 409 for a create-only key that exists already. */
export function existsConflict(key: string): HttpError {
  return new HttpError(409, "conflict", `write backup key '${key}': the object already exists and backups are never overwritten (only backups/state/ is mutable); write a new key`);
}

/** R2 error codes (https://developers.cloudflare.com/r2/api/error-codes/) that are the client's fault. */
function mapR2Error(operation: string, key: string, error: unknown): unknown {
  const message = error instanceof Error ? error.message : String(error);
  if (/\(10037\)|checksum|digest/i.test(message) && /match/i.test(message)) {
    return new HttpError(400, "checksum_mismatch", `${operation} '${key}': the body does not match its X-Content-SHA256; nothing was stored`);
  }
  if (/\(10024\)|NoSuchUpload|upload does not exist/i.test(message)) {
    return new HttpError(404, "upload_not_found", `${operation} '${key}': no such multipart upload (unknown, completed or aborted uploadId)`);
  }
  if (/\(10025\)|InvalidPart|same length/i.test(message)) {
    return new HttpError(
      400,
      "invalid_part",
      `${operation} '${key}': R2 refused the parts (${message.replace(/^[^:]*:\s*/, "").slice(0, 200)}); parts must be listed with the etags uploadPart returned, and every part but the last must have the same size`,
    );
  }
  if (/\(10011\)|EntityTooSmall|too small/i.test(message)) {
    return new HttpError(400, "part_too_small", `${operation} '${key}': every part but the last must be at least 5 MiB`);
  }
  if (/\(10048\)|InvalidPartNumber|\(10014\)|EntityTooLarge/i.test(message)) {
    return new HttpError(400, "bad_request", `${operation} '${key}': ${message.slice(0, 200)}`);
  }
  return error;
}

/** Awaits an R2 call, translating the failures a client caused into HttpErrors. */
export async function r2Call<T>(operation: string, key: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw mapR2Error(operation, key, error);
  }
}

/**
 * Completing or aborting an upload: R2 answers an uploadId it does not know for this key (garbage, another
 * key's, already completed) with its generic code 10001 there, not 10024. The id is the client's, so that
 * is the client's mistake: 404, not a 500 to be retried.
 */
export async function r2UploadCall<T>(operation: string, key: string, call: () => Promise<T>): Promise<T> {
  try {
    return await r2Call(operation, key, call);
  } catch (error) {
    if (!(error instanceof HttpError) && /\(10001\)/.test(error instanceof Error ? error.message : String(error))) {
      throw new HttpError(404, "upload_not_found", `${operation} '${key}': no such multipart upload for this key (unknown, completed or aborted uploadId)`);
    }
    throw error;
  }
}

export interface PutOptions {
  /** Lowercase hex SHA-256 that R2 checks the received bytes against. */
  sha256?: string;
  contentType?: string;
}

/**
 * Stores an object, create-only (atomically, with `If-None-Match: *`) unless the key is under
 * `backups/state/`: an existing key is a 409. The body must have a known length (a request body with
 * Content-Length, a Blob, or a FixedLengthStream's readable half) so R2 streams it.
 */
export async function putObject(bucket: R2Bucket, key: string, body: ReadableStream | Blob | null, options: PutOptions = {}): Promise<R2Object> {
  const put: R2PutOptions = {};
  if (!isOverwritableKey(key)) put.onlyIf = new Headers({ "If-None-Match": "*" });
  if (options.sha256) put.sha256 = options.sha256;
  if (options.contentType) put.httpMetadata = { contentType: options.contentType };
  const object = await r2Call("write backup key", key, () => bucket.put(key, body, put));
  if (object === null) throw existsConflict(key);
  return object;
}

/** 409 when a create-only key exists already: a cheap early refusal (the claim in claims.ts is what makes writes atomic). */
export async function assertWritable(bucket: R2Bucket, key: string): Promise<void> {
  if (isOverwritableKey(key)) return;
  if ((await bucket.head(key)) !== null) throw existsConflict(key);
}

/** A multipart upload of the binding, by id. R2 does not check the id here: errors surface on use. */
export function resumeUpload(bucket: R2Bucket, key: string, uploadId: string): R2MultipartUpload {
  return bucket.resumeMultipartUpload(key, uploadId);
}

/** One page of a listing, as `ApiListing`. */
export async function listObjects(bucket: R2Bucket, options: { prefix: string; cursor?: string; delimiter?: string; limit?: number }): Promise<ApiListing> {
  const page = await r2Call("list backups under", options.prefix, () =>
    bucket.list({
      prefix: options.prefix,
      ...(options.cursor ? { cursor: options.cursor } : {}),
      ...(options.delimiter ? { delimiter: options.delimiter } : {}),
      ...(options.limit ? { limit: options.limit } : {}),
    }),
  );
  return {
    objects: page.objects.map(describeObject),
    prefixes: page.delimitedPrefixes,
    ...(page.truncated ? { cursor: page.cursor } : {}),
    truncated: page.truncated,
  };
}

/** Every key under a prefix, following the cursor (R2 returns at most 1,000 per call, maybe fewer). */
export async function listAllKeys(bucket: R2Bucket, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix, ...(cursor ? { cursor } : {}) });
    for (const object of page.objects) keys.push(object.key);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return keys;
}

/**
 * Large reads go out in windows, one ranged get each (see windowedBody): at least 16 MiB, and at most 40
 * windows per object, so a read stays within the Free plan's 50 subrequests per request.
 */
const MIN_READ_WINDOW_BYTES = 16 * 1024 * 1024;
const MAX_READ_WINDOWS = 40;
export function readWindowBytes(size: number): number {
  return Math.max(MIN_READ_WINDOW_BYTES, Math.ceil(size / MAX_READ_WINDOWS));
}

/**
 * The bytes `[offset, offset + length)` of an object as one stream of known length, `first` (the first
 * window, already read) then one window at a time: each ranged get starts only when the client has taken the previous one, so memory stays
 * bounded by a window whatever the object's size or the client's speed. Measured in Miniflare: a 1 GiB
 * multipart object read whole took workerd to 841 MiB; read in windows, about 210-280 MiB (bench/worker.ts).
 */
export function windowedBody(bucket: R2Bucket, key: string, head: R2Object, first: ReadableStream, span: { offset: number; length: number; step: number }): ReadableStream {
  const { offset, length, step } = span;
  const { readable, writable } = new FixedLengthStream(length);
  const end = offset + length;
  (async () => {
    await first.pipeTo(writable, { preventClose: true });
    for (let at = offset + step; at < end; at += step) {
      const window = await bucket.get(key, { range: { offset: at, length: Math.min(step, end - at) }, onlyIf: { etagMatches: head.etag } });
      if (window === null || !("body" in window)) throw new Error(`read backup key '${key}': the object changed or vanished while it was read`);
      await window.body.pipeTo(writable, { preventClose: true });
    }
    await writable.close();
  })().catch(async (error) => {
    console.error(describeError(error));
    await writable.abort(error).catch(() => undefined);
  });
  return readable;
}
