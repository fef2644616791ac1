import { setTimeout as sleep } from "node:timers/promises";
import { createHash } from "node:crypto";
import { send, type Answer, type SendInit } from "../http.ts";
import { HEADERS, PATHS, checkWorkerUrl, objectPath, type ApiError, type ApiListing, type ApiMultipartCreated, type ApiObject, type ApiPart } from "../../core/index.ts";
import { JobError } from "../errors.ts";
import { addSecret, addUrlSecrets } from "../log.ts";
import {
  HttpStatusError,
  bodyLength,
  listEvery,
  type BackupStore,
  type Body,
  type ChainView,
  type CommitOutcome,
  type GetResult,
  type ListPage,
  type PutOptions,
  type StoredObject,
} from "./types.ts";
export { HttpStatusError } from "./types.ts";
import { CHAIN_HEAD_KEY, parseChainHead, type ApiChain, type ApiChainCommit, type ApiChainManifests, type ChainEntry, type ChainHead } from "../../core/chain.ts";

export interface HttpStoreOptions {
  /** The Worker's base URL, e.g. `https://backups.example.com` or the local `http://127.0.0.1:8787`. */
  url: string;
  /** `SERVER_BYPASS_TOKEN` (or `ADMIN_TOKEN` for deletes). Sent as `Authorization: Bearer`; never logged. */
  token: string;
  /** Attempts per request on network errors, 429 and 5xx (default 5). */
  attempts?: number;
  /** First backoff in ms, doubled per attempt with jitter, capped at 5 s (default 250). */
  backoffMs?: number;
  /** Per-request timeout in ms (default 300,000: a 95 MiB part on a slow link). */
  timeoutMs?: number;
  /** Stops every request, and the waits between them, when aborted (SIGINT/SIGTERM): a JobError `interrupted`. */
  signal?: AbortSignal;
  /** Called before each retry (for logs and tests). */
  onRetry?: (info: { operation: string; attempt: number; delayMs: number; reason: string }) => void;
}

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** A request's options: `expect` lists statuses handed back instead of thrown. */
type Init = SendInit & { expect?: number[] };

function toStored(o: ApiObject): StoredObject {
  return { key: o.key, size: o.size, etag: o.etag, uploaded: new Date(o.uploaded), ...(o.sha256 ? { sha256: o.sha256 } : {}) };
}

function fromHeaders(key: string, res: Answer): StoredObject {
  const sha = res.headers.get(HEADERS.contentSha256);
  const range = res.headers.get("content-range");
  const total = range ? Number(range.split("/")[1]) : Number(res.headers.get("content-length") ?? "0");
  return {
    key,
    size: total,
    etag: (res.headers.get("etag") ?? "").replaceAll('"', ""),
    uploaded: new Date(res.headers.get("last-modified") ?? 0),
    ...(sha ? { sha256: sha } : {}),
  };
}

/**
 * The job's store over the Worker API (docs/design.md, "Worker API"): bounded retries with backoff on network
 * errors, 429 (honouring Retry-After) and 5xx; a 401/403 is never retried and becomes exit code 4.
 */
export class HttpStore implements BackupStore {
  readonly url: string;
  readonly #token: string;
  readonly #attempts: number;
  readonly #backoffMs: number;
  readonly #timeoutMs: number;
  readonly #onRetry: HttpStoreOptions["onRetry"];
  readonly #signal: AbortSignal | undefined;

  constructor(options: HttpStoreOptions) {
    addSecret(options.token);
    addUrlSecrets(options.url);
    const checked = checkWorkerUrl(options.url, "R2_WORKER_URL");
    if (!("origin" in checked)) {
      throw new JobError("usage", `configure worker url '${checked.shown}': ${checked.reason}`, { hint: checked.hint });
    }
    if (!options.token) throw new JobError("usage", "configure worker token: none given", { hint: "set SERVER_BYPASS_TOKEN or --token" });
    this.url = checked.origin;
    this.#token = options.token;
    this.#attempts = Math.max(1, options.attempts ?? 5);
    this.#backoffMs = options.backoffMs ?? 250;
    this.#timeoutMs = options.timeoutMs ?? 300_000;
    this.#onRetry = options.onRetry;
    this.#signal = options.signal;
  }

  #interrupted(operation: string, id: string, cause?: unknown): JobError {
    return new JobError("interrupted", `${operation} '${id}': stopped by a signal`, { hint: "nothing complete-looking was left; run it again", cause });
  }

  /** One request with retries. `expect` lists statuses returned to the caller instead of thrown. */
  async #request(operation: string, id: string, path: string, init: Init = {}): Promise<Answer> {
    return this.#exchange(operation, id, path, init, async (res) => res);
  }

  /**
   * One exchange with retries, the answer's body included: `read` runs inside the retry loop, so an answer
   * cut off mid-body (a dropped connection, a proxy's timeout) is retried like a failed request. Only for
   * requests that may be repeated: idempotent ones, and commits whose outcome the caller checks (a
   * write-once PUT or a completion that meets its own earlier success).
   */
  async #exchange<T>(operation: string, id: string, path: string, init: Init, read: (res: Answer) => Promise<T>): Promise<T> {
    const { expect = [], ...rest } = init;
    let lastReason = "";
    for (let attempt = 1; ; attempt++) {
      if (this.#signal?.aborted) throw this.#interrupted(operation, id);
      let res: Answer | undefined;
      let retryAfterMs: number | undefined;
      const timeout = AbortSignal.timeout(this.#timeoutMs);
      try {
        res = await send(`${this.url}${path}`, {
          ...rest,
          headers: { authorization: `Bearer ${this.#token}`, ...(rest.headers as Record<string, string> | undefined) },
          signal: this.#signal ? AbortSignal.any([timeout, this.#signal]) : timeout,
        });
      } catch (e) {
        if (this.#signal?.aborted) throw this.#interrupted(operation, id, e);
        if (e instanceof JobError) throw e; // a redirect: retrying goes to the same place
        lastReason = describeNetworkError(e);
      }
      if (res) {
        if (res.ok || expect.includes(res.status)) {
          try {
            const out = await read(res);
            // node:http keeps a connection until its answer is read to the end: what `read` left is drained.
            if (out !== res) res.discard();
            return out;
          } catch (e) {
            if (e instanceof JobError) throw e;
            if (this.#signal?.aborted) throw this.#interrupted(operation, id, e);
            lastReason = `the answer broke off (${describeNetworkError(e)})`;
            res = undefined;
          }
        }
      }
      if (res) {
        const body = await readError(res);
        if (res.status === 401 || res.status === 403) {
          throw new HttpStatusError(
            "auth",
            res.status,
            `${operation} '${id}': the Worker rejected the token (${res.status} ${body.message})`,
            "check SERVER_BYPASS_TOKEN (or ADMIN_TOKEN for deletes) against the Worker's secret",
          );
        }
        if (!RETRYABLE_STATUS.has(res.status)) {
          throw new HttpStatusError(res.status === 404 ? "notFound" : "failed", res.status, `${operation} '${id}': ${res.status} ${body.error}: ${body.message}`);
        }
        lastReason = `${res.status} ${body.message}`;
        const ra = res.headers.get("retry-after");
        if (ra) retryAfterMs = /^\d+$/.test(ra) ? Number(ra) * 1000 : Math.max(0, Date.parse(ra) - Date.now());
      }
      if (attempt >= this.#attempts) {
        throw new JobError("unreachable", `${operation} '${id}': the Worker at ${this.url} failed ${attempt} times (last: ${lastReason})`, {
          hint: "check R2_WORKER_URL and that the Worker is up (GET /api/health), then run again",
        });
      }
      const delayMs = Math.min(60_000, retryAfterMs ?? this.#backoff(attempt));
      this.#onRetry?.({ operation, attempt, delayMs, reason: lastReason });
      await this.#pause(operation, id, delayMs);
    }
  }

  /** The backoff after `attempt`: doubled per attempt from `backoffMs`, capped at 5 s, with jitter (half to all of it). */
  #backoff(attempt: number): number {
    const backoff = Math.min(5000, this.#backoffMs * 2 ** (attempt - 1));
    return Math.round(backoff / 2 + Math.random() * (backoff / 2));
  }

  /** Waits `ms`; a signal stops the wait as the `interrupted` JobError. */
  async #pause(operation: string, id: string, ms: number): Promise<void> {
    await sleep(ms, undefined, this.#signal ? { signal: this.#signal } : {}).catch((e: unknown) => {
      throw this.#interrupted(operation, id, e);
    });
  }

  async chain(): Promise<ChainView> {
    const sent = performance.now();
    const localSent = Date.now();
    const answer = await this.#exchange("read chain", PATHS.chain, PATHS.chain, { method: "GET" }, async (res) => (await res.json()) as ApiChain);
    const received = performance.now();
    // The Worker read its clock somewhere within the round trip: take the middle.
    const mid = (sent + received) / 2;
    const workerAtMid = Date.parse(answer.now);
    return {
      head: answer.head === null ? null : parseChainHead(answer.head, CHAIN_HEAD_KEY),
      clock: () => new Date(workerAtMid + (performance.now() - mid)),
      skewMs: Math.round(localSent + (received - sent) / 2 - workerAtMid),
    };
  }

  async commitSet(manifest: string, expect: number): Promise<CommitOutcome> {
    const answer = await this.#exchange<CommitOutcome>(
      "commit set",
      `expect ${expect}`,
      `${PATHS.chain}?expect=${expect}`,
      { method: "POST", headers: { "content-type": "application/json" }, body: manifest, expect: [400, 409] },
      async (res) => {
        if (res.ok) return { committed: (await res.json()) as ApiChainCommit };
        const err = await readError(res);
        if (res.status === 409 && err.error === "chain_moved") return { moved: err.message };
        if (err.error === "clock_skew") throw new HttpStatusError("clockSkew", res.status, err.message, "check this machine's clock (timedatectl, chrony)");
        throw new HttpStatusError("failed", res.status, `commit set: ${res.status} ${err.error}: ${err.message}`);
      },
    );
    return answer;
  }

  async readManifests(sets: readonly string[]): Promise<Record<string, string | null>> {
    const q = new URLSearchParams({ sets: sets.join(",") });
    const answer = await this.#exchange("read manifests", `${sets.length} sets`, `${PATHS.chain}?${q}`, { method: "GET" }, async (res) => (await res.json()) as ApiChainManifests);
    return answer.manifests;
  }

  async rebuildChain(entries: readonly ChainEntry[]): Promise<ChainHead> {
    const answer = await this.#exchange(
      "rebuild chain",
      `${entries.length} sets`,
      `${PATHS.chain}?rebuild`,
      { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ entries }) },
      async (res) => (await res.json()) as ApiChain,
    );
    return parseChainHead(answer.head, CHAIN_HEAD_KEY);
  }

  async put(key: string, body: Body | string, options: PutOptions = {}): Promise<StoredObject> {
    const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
    // Always hashed: R2 checks it, and a retried PUT recognises its own earlier success by it.
    if (!(bytes instanceof Uint8Array) && options.sha256 === undefined) throw new JobError("usage", `upload '${key}': a file range is sent with its sha256`);
    const sha256 =
      options.sha256 ??
      createHash("sha256")
        .update(bytes as Uint8Array)
        .digest("hex");
    const headers: Record<string, string> = { "content-type": options.contentType ?? "application/octet-stream", [HEADERS.contentSha256]: sha256 };
    let answer: { conflict: ApiError } | { object: StoredObject };
    for (let attempt = 1; ; attempt++) {
      answer = await this.#exchange<{ conflict: ApiError } | { object: StoredObject }>(
        "upload",
        key,
        objectPath(key),
        { method: "PUT", body: bytes, headers, expect: [409] },
        async (res) => (res.status === 409 ? { conflict: await readError(res) } : { object: toStored((await res.json()) as ApiObject) }),
      );
      // Another write of this key holds its claim (our own earlier attempt, cut off): wait for it to end, then look.
      if (!("conflict" in answer) || answer.conflict.error !== "write_in_progress" || attempt >= this.#attempts) break;
      await this.#pause("upload", key, this.#backoff(attempt));
    }
    if ("conflict" in answer) {
      // Write-once keys: a PUT retried after a lost response meets its own earlier success. The same
      // bytes (R2-checked sha256 and size) are that success; anything else is a real conflict.
      const existing = await this.head(key);
      if (existing && existing.size === bodyLength(bytes) && existing.sha256 === sha256) return existing;
      throw new HttpStatusError("failed", 409, `upload '${key}': already exists (${answer.conflict.message})`, "backups are write-once; a new backup gets a new timestamp");
    }
    return answer.object;
  }

  async get(key: string, options: { offset?: number; length?: number } = {}): Promise<GetResult | undefined> {
    const headers: Record<string, string> = {};
    if (options.offset !== undefined || options.length !== undefined) {
      const start = options.offset ?? 0;
      headers.range = options.length === undefined ? `bytes=${start}-` : `bytes=${start}-${start + options.length - 1}`;
    }
    // A small JSON object (a manifest, a drill record) is read whole inside the retry loop, so one cut off
    // mid-body is fetched again; data objects stream, and their readers resume by range.
    const res = await this.#exchange("download", key, objectPath(key), { method: "GET", headers, expect: [404] }, (r) => (r.status === 404 ? Promise.resolve(r) : bufferSmall(r)));
    if (res.status === 404) {
      res.discard();
      return undefined;
    }
    if (!res.body) throw new JobError("failed", `download '${key}': the Worker sent no body`);
    const stored = fromHeaders(key, res);
    const result: GetResult = { ...stored, body: res.body };
    const cr = res.headers.get("content-range");
    const m = cr ? /bytes (\d+)-(\d+)\//.exec(cr) : null;
    if (m) result.range = { offset: Number(m[1]), length: Number(m[2]) - Number(m[1]) + 1 };
    return result;
  }

  async head(key: string): Promise<StoredObject | undefined> {
    const res = await this.#request("inspect", key, objectPath(key), { method: "HEAD", expect: [404] });
    res.discard();
    return res.status === 404 ? undefined : fromHeaders(key, res);
  }

  async list(prefix: string, options: { cursor?: string; delimiter?: string; limit?: number } = {}): Promise<ListPage> {
    const q = new URLSearchParams({ prefix });
    if (options.cursor) q.set("cursor", options.cursor);
    if (options.delimiter) q.set("delimiter", options.delimiter);
    if (options.limit) q.set("limit", String(options.limit));
    const page = await this.#exchange("list", prefix, `${PATHS.backups}?${q}`, { method: "GET" }, async (res) => (await res.json()) as ApiListing);
    return { objects: page.objects.map(toStored), prefixes: page.prefixes, truncated: page.truncated, ...(page.cursor ? { cursor: page.cursor } : {}) };
  }

  async listAll(prefix: string): Promise<StoredObject[]> {
    return listEvery(this, prefix);
  }

  async delete(key: string): Promise<void> {
    const res = await this.#request("delete", key, objectPath(key), { method: "DELETE", expect: [404] });
    res.discard();
  }

  async createMultipart(key: string, options: { contentType?: string } = {}): Promise<string> {
    // A retry after a lost answer starts a second upload; the first is aborted by the bucket's lifecycle rule.
    const created = await this.#exchange(
      "start multipart upload of",
      key,
      `${objectPath(key)}?uploads`,
      { method: "POST", headers: { "content-type": options.contentType ?? "application/octet-stream" } },
      async (res) => (await res.json()) as ApiMultipartCreated,
    );
    return created.uploadId;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Body): Promise<{ partNumber: number; etag: string }> {
    const q = new URLSearchParams({ uploadId, partNumber: String(partNumber) });
    // A part may be sent again: the later upload of a part number replaces the earlier.
    return this.#exchange(`upload part ${partNumber} of`, key, `${objectPath(key)}?${q}`, { method: "PUT", body }, async (res) => (await res.json()) as ApiPart);
  }

  async completeMultipart(key: string, uploadId: string, parts: { partNumber: number; etag: string }[]): Promise<StoredObject> {
    const q = new URLSearchParams({ uploadId });
    let answer: { status: number; err: ApiError } | { object: StoredObject };
    for (let attempt = 1; ; attempt++) {
      answer = await this.#exchange<{ status: number; err: ApiError } | { object: StoredObject }>(
        "complete multipart upload of",
        key,
        `${objectPath(key)}?${q}`,
        { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ parts }), expect: [404, 409] },
        async (res) => (res.status === 404 || res.status === 409 ? { status: res.status, err: await readError(res) } : { object: toStored((await res.json()) as ApiObject) }),
      );
      // Our own earlier completion, its answer lost, may still hold the key's claim: wait for it, then look.
      if (!("status" in answer) || answer.err.error !== "write_in_progress" || attempt >= this.#attempts) break;
      await this.#pause("complete multipart upload of", key, this.#backoff(attempt));
    }
    if ("status" in answer) {
      // A retried completion whose first attempt succeeded (its answer lost) finds the upload gone (404) or
      // the key taken (409). The object is ours when its multipart etag is the one these parts produce.
      const { err } = answer;
      const res = answer;
      const existing = await this.head(key);
      const expected = multipartEtag(parts);
      // R2's part etags are opaque (not md5s): then the part count in the etag is what can be checked, and
      // the caller compares the object's size with the bytes it sent.
      const ours = existing && (expected === undefined ? existing.etag.endsWith(`-${parts.length}`) : existing.etag === expected);
      if (existing && ours) return existing;
      throw new HttpStatusError(
        "failed",
        res.status,
        `complete multipart upload of '${key}': ${res.status === 404 ? `the upload '${uploadId}' is gone` : `the key exists with other content (${err.message})`}`,
        "run the backup again",
      );
    }
    return answer.object;
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    const q = new URLSearchParams({ uploadId });
    const res = await this.#request("abort multipart upload of", key, `${objectPath(key)}?${q}`, { method: "DELETE", expect: [404] });
    res.discard();
  }
}

/** S3/R2's etag of a multipart object: md5 of the parts' binary md5s, then `-<count>`; undefined when the part etags are not md5s. */
export function multipartEtag(parts: { partNumber: number; etag: string }[]): string | undefined {
  const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber).map((p) => p.etag.replaceAll('"', ""));
  if (sorted.length === 0 || !sorted.every((e) => /^[0-9a-f]{32}$/i.test(e))) return undefined;
  const md5 = createHash("md5");
  for (const e of sorted) md5.update(Buffer.from(e, "hex"));
  return `${md5.digest("hex")}-${sorted.length}`;
}

/** JSON GET answers up to this size are read whole inside the retry loop (manifests, drill records, pointers). */
const SMALL_GET_BYTES = 1024 * 1024;

/**
 * A JSON answer whose body is small, read whole (an error here is retried by the caller's loop); a large one
 * is handed on as a stream that starts with the bytes already read. The Worker may send JSON without a
 * length, so the size is found by reading up to the limit.
 */
async function bufferSmall(res: Answer): Promise<Answer> {
  const declared = res.headers.get("content-length");
  // Data objects stream to readers that resume them by range (restore/download.ts); JSON is read here.
  const isJson = /^application\/json\b/i.test(res.headers.get("content-type") ?? "");
  if (!res.body || !isJson || (declared !== null && Number(declared) > SMALL_GET_BYTES)) return res;
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
    if (size > SMALL_GET_BYTES) {
      const body = new ReadableStream<Uint8Array>({
        pull: async (controller) => {
          const next = chunks.shift();
          if (next) return controller.enqueue(next);
          const { done: end, value: more } = await reader.read();
          if (end) controller.close();
          else controller.enqueue(more);
        },
        cancel: (reason) => reader.cancel(reason),
      });
      return res.withBody(body);
    }
  }
  if (declared !== null && size !== Number(declared)) throw new Error(`the body ended after ${size} of ${declared} bytes`);
  return res.withBody(Buffer.concat(chunks));
}

async function readError(res: Answer): Promise<ApiError> {
  const text = await res.text().catch(() => "");
  try {
    const body = JSON.parse(text) as Partial<ApiError>;
    return { error: String(body.error ?? res.statusText), message: String(body.message ?? "") };
  } catch {
    return { error: res.statusText || String(res.status), message: text.slice(0, 200) };
  }
}

function describeNetworkError(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  if ((e as Error).name === "TimeoutError") return "timed out";
  return cause?.code ?? cause?.message ?? (e as Error).message ?? String(e);
}
