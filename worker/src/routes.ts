// Core modules by name, not core/index.ts: the index pulls in the manifest's and the retention policy's
// checks, which the Worker never uses and esbuild cannot drop (top-level calls). (With zod, they tripled it.)
import {
  HEADERS,
  MAX_CLOCK_SKEW_MS,
  MAX_FORM_UPLOAD_BYTES,
  MAX_PART_BYTES,
  MAX_PARTS,
  MAX_SINGLE_PUT_BYTES,
  PATHS,
  keyFromPath,
  type ApiMultipartCreated,
  type ApiPart,
} from "../../core/api.ts";
import { ROOT, futureKeyReason, validateObjectKey } from "../../core/keys.ts";
import { authenticate, requireAdmin, type Role } from "./auth.ts";
import { writeOnce } from "./claims.ts";
import type { Env } from "./env.ts";
import { HttpError, errorResponse, json } from "./errors.ts";
import { contentSha256, countedBody, readLimited, requireContentLength, resolveRange } from "./http.ts";
import { assertWritable, describeObject, existsConflict, listObjects, putObject, r2Call, r2UploadCall, readWindowBytes, resumeUpload, storedSha256, windowedBody } from "./r2.ts";
import { chainRoute, isChainKey } from "./chain.ts";
import { backupStatus } from "./scheduled.ts";

/** What the Worker needs of its ExecutionContext: a write keeps running (and releases its claim) when the client hangs up. */
export interface Background {
  waitUntil(promise: Promise<unknown>): void;
}

/** The Worker API of docs/design.md; every failure leaves through the one error handler as JSON. */
export async function handleRequest(request: Request, env: Env, ctx?: Background): Promise<Response> {
  try {
    return await route(request, env, ctx);
  } catch (error) {
    return errorResponse(error, request);
  }
}

function chainKeyRefused(key: string): HttpError {
  return new HttpError(
    403,
    "forbidden",
    `write backup key '${key}': the chain is written only through ${PATHS.chain} (a commit appends a set; an admin rebuild replaces the index)`,
  );
}

function methodNotAllowed(path: string, allow: string): HttpError {
  return new HttpError(405, "method_not_allowed", `request '${path}': method not allowed (allowed: ${allow})`, { Allow: allow });
}

/**
 * The one-clock rule (issue 13, core's `futureKeyReason`): a write whose set id is more than
 * MAX_CLOCK_SKEW_MS after the Worker's clock is refused, so a stray or skewed object cannot end the chain.
 */
function assertNotFuture(operation: string, key: string, now: Date): void {
  const reason = futureKeyReason(key, now, MAX_CLOCK_SKEW_MS);
  if (reason !== undefined) {
    throw new HttpError(
      400,
      "clock_skew",
      `${operation} '${key}': ${reason} (the job takes set ids from the Worker's clock; check the job machine's clock and what wrote this key)`,
    );
  }
}

/**
 * A create-only write of `key` by `owner` (a request id, or the multipart uploadId): under the key's claim (an
 * existing key is a 409), run to the end even when the client hangs up, so its claim is always released.
 */
function createOnce(ctx: Background | undefined, bucket: R2Bucket, key: string, owner: string, now: Date, write: () => Promise<R2Object>): Promise<R2Object> {
  const work = writeOnce(bucket, key, owner, now, () => existsConflict(key), write);
  ctx?.waitUntil(work.catch(() => undefined));
  return work;
}

async function route(request: Request, env: Env, ctx: Background | undefined): Promise<Response> {
  const url = new URL(request.url);
  const path = url.pathname;
  const method = request.method;

  if (path === PATHS.health) {
    if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(path, "GET, HEAD");
    // `now` is the Worker's clock, the one clock set ids come from (issue 13).
    return json({ ok: true, service: "r2-sqlite-backup", now: new Date().toISOString() });
  }
  if (path !== "/api" && !path.startsWith("/api/")) {
    throw new HttpError(404, "not_found", `request '${path}': not found (the API is under /api)`);
  }

  const role = await authenticate(request, env);

  if (path === PATHS.status) {
    if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(path, "GET, HEAD");
    return json(await backupStatus(env, new Date()));
  }
  if (path === PATHS.uploadBackup) {
    if (method !== "POST") throw methodNotAllowed(path, "POST");
    return formUpload(request, env, ctx);
  }
  if (path === PATHS.chain) return chainRoute(request, url, env, role);
  if (path === PATHS.backups || path === `${PATHS.backups}/`) {
    if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(path, "GET, HEAD");
    return list(url, env);
  }
  const key = keyFromPath(path);
  if (key === undefined) throw new HttpError(404, "not_found", `request '${path}': not found`);
  return objectRoute(request, url, env, key, role, ctx);
}

async function objectRoute(request: Request, url: URL, env: Env, key: string, role: Role, ctx: Background | undefined): Promise<Response> {
  const params = url.searchParams;
  const uploadId = params.get("uploadId");
  if (uploadId !== null && uploadId.length === 0) throw new HttpError(400, "bad_request", `multipart upload of '${key}': uploadId is empty`);
  if ((request.method === "PUT" || request.method === "POST") && isChainKey(key)) throw chainKeyRefused(key);
  switch (request.method) {
    case "GET":
    case "HEAD":
      return read(request, env, key);
    case "PUT":
      return uploadId === null ? put(request, env, key, ctx) : uploadPart(request, url, env, key, uploadId);
    case "POST":
      if (params.has("uploads")) return createUpload(request, env, key);
      if (uploadId !== null) return completeUpload(request, env, key, uploadId, ctx);
      throw new HttpError(400, "bad_request", `post backup key '${key}': expected ?uploads (start a multipart upload) or ?uploadId= (complete one)`);
    case "DELETE":
      if (uploadId !== null) return abortUpload(env, key, uploadId);
      return remove(env, key, role);
    default:
      throw methodNotAllowed(url.pathname, "GET, HEAD, PUT, POST, DELETE");
  }
}

async function read(request: Request, env: Env, key: string): Promise<Response> {
  const bucket = env.BACKUP_BUCKET;
  const notFound = () => new HttpError(404, "not_found", `read backup key '${key}': no such object`);
  const head = await bucket.head(key);
  if (head === null) throw notFound();
  const headers = new Headers();
  head.writeHttpMetadata(headers);
  if (!headers.has("Content-Type")) headers.set("Content-Type", "application/octet-stream");
  headers.set("ETag", head.httpEtag);
  headers.set("Last-Modified", head.uploaded.toUTCString());
  headers.set("Accept-Ranges", "bytes");
  // no-transform: Cloudflare (and Miniflare) would otherwise gzip text-typed objects and drop their length.
  headers.set("Cache-Control", "no-store, no-transform");
  const sha256 = storedSha256(head);
  if (sha256) headers.set(HEADERS.contentSha256, sha256);

  if (request.method === "HEAD") {
    headers.set("Content-Length", String(head.size));
    return new Response(null, { status: 200, headers });
  }
  const range = resolveRange(request.headers.get("Range"), head.size);
  const offset = range?.offset ?? 0;
  const length = range?.length ?? head.size;
  const status = range ? 206 : 200;
  if (range) headers.set("Content-Range", `bytes ${offset}-${offset + length - 1}/${head.size}`);
  headers.set("Content-Length", String(length));
  // An empty stream would be sent chunked, without its length: answer an empty object with empty bytes.
  if (length === 0) return new Response(new Uint8Array(0), { status, headers });
  const step = readWindowBytes(head.size);
  // The etag condition pins the read to the version just described (only backups/state/ can change).
  // The first window is read before answering, so a vanished or changed object is still a 404 or 409.
  const first = await bucket.get(key, { onlyIf: { etagMatches: head.etag }, range: { offset, length: Math.min(step, length) } });
  if (first === null) throw notFound();
  if (!("body" in first)) {
    throw new HttpError(409, "conflict", `read backup key '${key}': the object changed while it was read; retry`);
  }
  if (length <= step) return new Response(first.body, { status, headers });
  return new Response(windowedBody(bucket, key, head, first.body, { offset, length, step }), { status, headers });
}

async function put(request: Request, env: Env, key: string, ctx: Background | undefined): Promise<Response> {
  const operation = `write backup key '${key}'`;
  const now = new Date();
  assertNotFuture("write backup key", key, now);
  const length = requireContentLength(request, MAX_SINGLE_PUT_BYTES, operation, "use a multipart upload: POST ?uploads, PUT ?uploadId=&partNumber=, POST ?uploadId=");
  const sha256 = contentSha256(request, operation);
  const contentType = request.headers.get("Content-Type") ?? undefined;
  const options = { ...(sha256 ? { sha256 } : {}), ...(contentType ? { contentType } : {}) };
  const bucket = env.BACKUP_BUCKET;
  const object = await createOnce(ctx, bucket, key, crypto.randomUUID(), now, async () => {
    if (length === 0) return putObject(bucket, key, null, options);
    const counted = countedBody(request, length, operation);
    try {
      return await putObject(bucket, key, counted.body, options);
    } catch (error) {
      throw counted.failure(error) ?? error;
    }
  });
  return json(describeObject(object), 201);
}

async function createUpload(request: Request, env: Env, key: string): Promise<Response> {
  assertNotFuture("start multipart upload of", key, new Date());
  await assertWritable(env.BACKUP_BUCKET, key);
  const contentType = request.headers.get("Content-Type") ?? undefined;
  const upload = await r2Call("start multipart upload of", key, () => env.BACKUP_BUCKET.createMultipartUpload(key, contentType ? { httpMetadata: { contentType } } : {}));
  const body: ApiMultipartCreated = { key, uploadId: upload.uploadId };
  return json(body, 201);
}

async function uploadPart(request: Request, url: URL, env: Env, key: string, uploadId: string): Promise<Response> {
  const raw = url.searchParams.get("partNumber") ?? "";
  const partNumber = /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(partNumber >= 1 && partNumber <= MAX_PARTS)) {
    throw new HttpError(400, "bad_request", `upload part of '${key}': partNumber '${raw}' must be a whole number from 1 to ${MAX_PARTS}`);
  }
  const operation = `upload part ${partNumber} of '${key}'`;
  const length = requireContentLength(request, MAX_PART_BYTES, operation, `parts are at most ${MAX_PART_BYTES} bytes`);
  if (length === 0 || request.body === null)
    throw new HttpError(400, "bad_request", `${operation}: the part is empty (every part but the last is at least 5 MiB, the last at least 1 byte)`);
  const sha256 = contentSha256(request, operation);
  const counted = countedBody(request, length, operation, { sha256: sha256 !== undefined });
  let part: R2UploadedPart;
  try {
    part = await r2Call(`upload part ${partNumber} of`, key, () => resumeUpload(env.BACKUP_BUCKET, key, uploadId).uploadPart(partNumber, counted.body));
  } catch (error) {
    throw counted.failure(error) ?? error;
  }
  // R2 checks no hash on parts: the Worker does, and a part that does not match is not handed back.
  if (sha256 !== undefined && (await counted.sha256()) !== sha256) {
    throw new HttpError(400, "checksum_mismatch", `${operation}: the body does not match its ${HEADERS.contentSha256}; the part was not accepted, upload it again`);
  }
  const answer: ApiPart = { partNumber: part.partNumber, etag: part.etag };
  return json(answer);
}

/** The biggest completion body: 10,000 parts of `{"partNumber":n,"etag":"..."}` fit easily. */
const MAX_COMPLETE_BODY_BYTES = 2 * 1024 * 1024;

async function completeUpload(request: Request, env: Env, key: string, uploadId: string, ctx: Background | undefined): Promise<Response> {
  const operation = `complete multipart upload of '${key}'`;
  const now = new Date();
  assertNotFuture("complete multipart upload of", key, now);
  const bytes = await readLimited(request, MAX_COMPLETE_BODY_BYTES, operation, `10,000 parts fit in ${MAX_COMPLETE_BODY_BYTES} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new HttpError(400, "bad_request", `${operation}: the body is not JSON; expected {"parts":[{"partNumber":1,"etag":"..."}]}`);
  }
  const parts = (parsed as { parts?: unknown } | null)?.parts;
  if (!Array.isArray(parts) || parts.length === 0 || parts.length > MAX_PARTS) {
    throw new HttpError(400, "bad_request", `${operation}: expected {"parts":[{"partNumber":1,"etag":"..."}]} with 1 to ${MAX_PARTS} parts`);
  }
  const checked: R2UploadedPart[] = parts.map((p: unknown, i) => {
    const { partNumber, etag } = (p ?? {}) as { partNumber?: unknown; etag?: unknown };
    if (!Number.isInteger(partNumber) || (partNumber as number) < 1 || (partNumber as number) > MAX_PARTS || typeof etag !== "string" || etag === "") {
      throw new HttpError(400, "bad_request", `${operation}: parts[${i}] must be {"partNumber": 1..${MAX_PARTS}, "etag": "<etag of uploadPart>"}`);
    }
    return { partNumber: partNumber as number, etag };
  });
  checked.sort((a, b) => a.partNumber - b.partNumber);
  if (checked.some((p, i) => i > 0 && checked[i - 1]!.partNumber === p.partNumber)) {
    throw new HttpError(400, "bad_request", `${operation}: a part number is listed twice`);
  }
  // R2's complete() has no onlyIf: the key's claim (owned by this upload) makes it the only writer.
  const bucket = env.BACKUP_BUCKET;
  const object = await createOnce(ctx, bucket, key, uploadId, now, () =>
    r2UploadCall("complete multipart upload of", key, () => resumeUpload(bucket, key, uploadId).complete(checked)),
  );
  return json(describeObject(object), 201);
}

async function abortUpload(env: Env, key: string, uploadId: string): Promise<Response> {
  await r2UploadCall("abort multipart upload of", key, () => resumeUpload(env.BACKUP_BUCKET, key, uploadId).abort());
  return new Response(null, { status: 204 });
}

async function remove(env: Env, key: string, role: Role): Promise<Response> {
  requireAdmin(role, `delete backup key '${key}'`);
  if ((await env.BACKUP_BUCKET.head(key)) === null) throw new HttpError(404, "not_found", `delete backup key '${key}': no such object`);
  await env.BACKUP_BUCKET.delete(key);
  return new Response(null, { status: 204 });
}

async function list(url: URL, env: Env): Promise<Response> {
  const params = url.searchParams;
  const prefix = params.get("prefix") || ROOT;
  if (!prefix.startsWith(ROOT)) {
    throw new HttpError(400, "bad_request", `list backups under '${prefix.slice(0, 100)}': the prefix must start with '${ROOT}'`);
  }
  const rawLimit = params.get("limit");
  let limit: number | undefined;
  if (rawLimit !== null && rawLimit !== "") {
    limit = /^\d{1,4}$/.test(rawLimit) ? Number(rawLimit) : NaN;
    if (!(limit >= 1 && limit <= 1000)) throw new HttpError(400, "bad_request", `list backups under '${prefix}': limit '${rawLimit}' must be 1 to 1000`);
  }
  const cursor = params.get("cursor") || undefined;
  const delimiter = params.get("delimiter") || undefined;
  return json(await listObjects(env.BACKUP_BUCKET, { prefix, ...(cursor ? { cursor } : {}), ...(delimiter ? { delimiter } : {}), ...(limit ? { limit } : {}) }));
}

async function formUpload(request: Request, env: Env, ctx: Background | undefined): Promise<Response> {
  const operation = "upload backup form";
  // formData() buffers the whole body: refuse big ones before reading a byte (docs/design.md fact 2).
  requireContentLength(request, MAX_FORM_UPLOAD_BYTES, operation, `use PUT ${PATHS.backups}/<key> or a multipart upload for larger files`);
  const type = request.headers.get("Content-Type") ?? "";
  if (!/^multipart\/form-data/i.test(type)) {
    throw new HttpError(400, "bad_request", `${operation}: expected Content-Type multipart/form-data with a 'file' field whose filename is the key`);
  }
  // Read through the byte-counting limit, whatever Content-Length said: formData() alone would buffer it all.
  const bytes = await readLimited(request, MAX_FORM_UPLOAD_BYTES, operation, `use PUT ${PATHS.backups}/<key> or a multipart upload for larger files`);
  let form: FormData;
  try {
    form = await new Response(bytes, { headers: { "Content-Type": type } }).formData();
  } catch {
    throw new HttpError(400, "bad_request", `${operation}: the body is not a valid multipart form`);
  }
  const file = form.get("file");
  if (file === null || typeof file === "string") {
    throw new HttpError(400, "bad_request", `${operation}: the form has no 'file' field with a file (its filename is the key)`);
  }
  const key = validateObjectKey(file.name);
  if (isChainKey(key)) throw chainKeyRefused(key);
  const now = new Date();
  assertNotFuture(operation, key, now);
  const sha256 = contentSha256(request, `${operation} '${key}'`);
  const bucket = env.BACKUP_BUCKET;
  const object = await createOnce(ctx, bucket, key, crypto.randomUUID(), now, () =>
    putObject(bucket, key, file, { ...(sha256 ? { sha256 } : {}), contentType: file.type || "application/octet-stream" }),
  );
  return json({ ...describeObject(object), success: true }, 201);
}
