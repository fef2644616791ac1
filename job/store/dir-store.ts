import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { link, mkdir, open, readFile, readdir, rename, rm, stat, unlink, writeFile, type FileHandle } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { MAX_CLOCK_SKEW_MS } from "../../core/api.ts";
import { DEFAULT_RETENTION } from "../../core/retention.ts";
import {
  CHAIN_HEAD_KEY,
  CHAIN_PREFIX,
  appendEntry,
  chainSegmentText,
  entryFromManifest,
  headFromEntries,
  parseChainHead,
  refuseAppend,
  refuseSetObjects,
  type ChainEntry,
  type ChainHead,
} from "../../core/chain.ts";
import { ContractError } from "../../core/errors.ts";
import { futureKeyReason, isOverwritableKey, manifestKey, validateObjectKey } from "../../core/keys.ts";
import { JobError } from "../errors.ts";
import { acquireLock } from "../lock.ts";
import { fsyncPath } from "../restore/replace.ts";
import { hashFile } from "../stream.ts";
import {
  HttpStatusError,
  listEvery,
  type BackupStore,
  type Body,
  type FileRange,
  type ChainView,
  type CommitOutcome,
  type GetResult,
  type ListPage,
  type PutOptions,
  type StoredObject,
} from "./types.ts";

export interface DirStoreOptions {
  /** The directory that holds `backups/` (a bucket's layout: each key is a file under it). */
  root: string;
  /** May delete objects (the Worker's admin token); the job's role may not. */
  admin?: boolean;
  /** Stops each call before it starts (SIGINT/SIGTERM): a JobError `interrupted`. */
  signal?: AbortSignal;
}

/** The store's own files, outside `backups/` so no key can name them. */
const OWN = ".r2backup";
const COPY_CHUNK = 256 * 1024;
const LIST_LIMIT = 1000;

/**
 * The BackupStore over a local directory laid out as the bucket is (`<root>/backups/...`, one file per key): a
 * copy of the bucket (`rclone sync r2:<bucket> <dir>`) to restore from when the Worker or the account is gone,
 * a mounted volume as a second place for backups, and the same storage Litestream's `file://` replica is
 * measured on. It keeps the Worker's rules (docs/design.md, "Worker API"): keys checked by core, write-once
 * outside `backups/state/`, a body checked against its sha256 before it is stored, chain keys written only by a
 * commit, a commit only of a set whose objects are all stored, the chain appended by compare-and-swap (here
 * under a lock file), deletes for the admin role only. Objects are written whole to a temporary file, synced and
 * then linked or renamed into place: a crash leaves no partial object under a key. The clock is this machine's.
 * One machine at a time: the chain lock holds a pid, which only this machine can check.
 */
export class DirStore implements BackupStore {
  readonly root: string;
  readonly #admin: boolean;
  readonly #signal: AbortSignal | undefined;

  constructor(options: DirStoreOptions) {
    if (!options.root) throw new JobError("usage", "configure store directory: none given", { hint: "pass --dir <the directory that holds backups/>" });
    this.root = resolve(options.root);
    this.#admin = options.admin ?? false;
    this.#signal = options.signal;
  }

  /** The file of a key, after core's key rule (no `..`, no empty segment, under backups/...). */
  #path(operation: string, key: string): string {
    try {
      validateObjectKey(key);
    } catch (e) {
      throw new JobError("usage", `${operation} '${String(key).slice(0, 80)}': ${e instanceof ContractError ? e.reason : (e as Error).message}`);
    }
    return join(this.root, key);
  }

  /** Checks the signal and that the root is a directory: a clear error instead of ENOENT from deep inside. */
  async #ready(operation: string, id: string): Promise<void> {
    if (this.#signal?.aborted) throw new JobError("interrupted", `${operation} '${id}': stopped by a signal`, { hint: "nothing complete-looking was left; run it again" });
    const st = await stat(this.root).catch(() => undefined);
    if (!st?.isDirectory()) {
      throw new JobError("usage", `${operation} '${id}': the store directory '${this.root}' does not exist or is not a directory`, {
        hint: "create it, or pass the directory that holds backups/ (--dir)",
      });
    }
  }

  #own(...parts: string[]): string {
    return join(this.root, OWN, ...parts);
  }

  async chain(): Promise<ChainView> {
    await this.#ready("read chain", CHAIN_HEAD_KEY);
    return { head: await this.#readHead(), clock: () => new Date(), skewMs: 0 };
  }

  async #readHead(): Promise<ChainHead | null> {
    const text = await readFile(join(this.root, CHAIN_HEAD_KEY), "utf8").catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return null;
      throw e;
    });
    if (text === null) return null;
    try {
      return parseChainHead(text, CHAIN_HEAD_KEY);
    } catch (e) {
      throw new JobError("integrity", `read chain '${CHAIN_HEAD_KEY}': the head is damaged (${(e as Error).message})`, {
        hint: "rebuild it from the manifests: r2backup chain --rebuild --dir <dir>",
      });
    }
  }

  /**
   * One commit at a time under `<root>/.r2backup/chain.lock`, across processes and within this one (job/lock.ts
   * refuses a second holder in the same process too): a busy lock is waited for, up to 30 s.
   */
  async #underChainLock<T>(operation: string, work: () => Promise<T>): Promise<T> {
    await mkdir(this.#own(), { recursive: true });
    const path = this.#own("chain.lock");
    for (let waited = 0; ; waited += 50) {
      const lock = await acquireLock(path).catch((e: unknown) => {
        if (e instanceof JobError && e.kind === "busy" && waited < 30_000) return undefined;
        if (e instanceof JobError && e.kind === "busy")
          throw new JobError("busy", `${operation}: another run held '${path}' for 30 s`, { hint: "wait for it to end, then run again" });
        throw e;
      });
      if (!lock) {
        await sleep(50);
        continue;
      }
      try {
        return await work();
      } finally {
        await lock.release();
      }
    }
  }

  async commitSet(manifest: string, expect: number): Promise<CommitOutcome> {
    await this.#ready("commit set", `expect ${expect}`);
    let entry: ChainEntry;
    let parsed: { files?: unknown };
    try {
      parsed = JSON.parse(manifest) as { files?: unknown };
      entry = entryFromManifest(parsed);
    } catch (e) {
      throw new JobError("failed", `commit set: the body is not a backup manifest (${e instanceof ContractError ? e.reason : "not JSON"})`);
    }
    const operation = `commit ${entry.kind} set '${entry.id}'`;
    return this.#underChainLock(operation, async () => {
      const head = await this.#readHead();
      const now = new Date();
      const refusal = refuseAppend(head, entry, expect, now, MAX_CLOCK_SKEW_MS);
      if (refusal?.code === "chain_moved") return { moved: `${operation}: ${refusal.reason} (${refusal.hint})` };
      if (refusal) throw new JobError(refusal.code === "clock_skew" ? "clockSkew" : "failed", `${operation}: ${refusal.reason}`, { hint: refusal.hint });
      const objects = await refuseSetObjects(entry, parsed, async (key) => {
        const st = await stat(join(this.root, key)).catch(() => undefined);
        return st?.isFile() ? { size: st.size, sha256: await this.#sha256(key) } : null;
      });
      if (objects) throw new JobError("failed", `${operation}: ${objects.reason}`);
      // The manifest first: a head never points at a set without one.
      const key = manifestKey(entry.kind, entry.id);
      const bytes = Buffer.from(manifest);
      const existing = await readFile(join(this.root, key)).catch(() => undefined);
      if (existing === undefined) await this.#writeObject(operation, key, bytes, { sha256: sha256Of(bytes) });
      else if (!existing.equals(bytes)) throw new JobError("failed", `${operation}: another manifest is stored at '${key}'`, { hint: "take the set again under a new id" });
      const next = appendEntry(head, entry, now);
      if (next.seal) await this.#replace(next.seal.key, chainSegmentText(next.seal));
      await this.#replace(CHAIN_HEAD_KEY, JSON.stringify(next.head));
      return { committed: { key, entry, head: next.head } };
    });
  }

  async readManifests(sets: readonly string[]): Promise<Record<string, string | null>> {
    await this.#ready("read manifests", `${sets.length} sets`);
    const out: Record<string, string | null> = {};
    for (const set of sets) {
      const [kind, id] = set.split("/");
      if ((kind !== "full" && kind !== "incremental") || id === undefined) throw new JobError("usage", `read manifests '${set}': expected full/<ts> or incremental/<ts>`);
      out[set] = await readFile(this.#path("read manifest", manifestKey(kind, id)), "utf8").catch(() => null);
    }
    return out;
  }

  async rebuildChain(entries: readonly ChainEntry[]): Promise<ChainHead> {
    await this.#ready("rebuild chain", `${entries.length} sets`);
    if (!this.#admin)
      throw new JobError("auth", `rebuild chain '${this.root}': needs the admin role`, {
        hint: "open it with admin: true (the CLI does: whoever may write the directory may delete from it)",
      });
    return this.#underChainLock("rebuild chain", async () => {
      const built = headFromEntries(entries, new Date());
      for (const s of built.segments) await this.#replace(s.key, chainSegmentText(s));
      await this.#replace(CHAIN_HEAD_KEY, JSON.stringify(built.head));
      return built.head;
    });
  }

  async put(key: string, body: Body | string, options: PutOptions = {}): Promise<StoredObject> {
    const operation = "upload";
    this.#path(operation, key);
    await this.#ready(operation, key);
    if (key.startsWith(CHAIN_PREFIX)) {
      throw new JobError("usage", `${operation} '${key}': chain keys are written only by a commit (commitSet)`);
    }
    const future = futureKeyReason(key, new Date(), MAX_CLOCK_SKEW_MS);
    if (future) throw new JobError("clockSkew", `${operation} '${key}': ${future}`, { hint: "set ids come from the store's clock; check what wrote this key" });
    return this.#writeObject(operation, key, typeof body === "string" ? Buffer.from(body) : body, options);
  }

  /**
   * Writes `body` whole to a temporary file, checks its sha256, syncs it, then moves it under `key`: linked for
   * a write-once key (an existing key is a conflict, unless it holds these very bytes: a retried put), renamed
   * over for a `backups/state/` key.
   */
  async #writeObject(operation: string, key: string, body: Body, options: PutOptions): Promise<StoredObject> {
    const target = this.#path(operation, key);
    const tmp = await this.#temp();
    try {
      const written = await copyInto(tmp, [body], { hash: true });
      if (options.sha256 !== undefined && written.sha256 !== options.sha256) {
        throw new JobError("integrity", `${operation} '${key}': the body's sha256 is ${written.sha256}, not the ${options.sha256} it was sent with`, {
          hint: "nothing was stored; run it again",
        });
      }
      await mkdir(dirname(target), { recursive: true });
      if (isOverwritableKey(key)) await rename(tmp, target);
      else {
        // Its sha256 (checked against the one sent), beside the object and written before it: head answers it, as
        // R2 keeps the checksum an upload carried (HttpStore always sends one).
        await this.#writeSha256(key, written.sha256!);
        try {
          await link(tmp, target);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
          const existing = await hashFile(target);
          if (existing.size === written.size && existing.sha256 === written.sha256) return this.#stored(key, target);
          throw new HttpStatusError("failed", 409, `${operation} '${key}': already exists with other content`, "backups are write-once; a new backup gets a new timestamp");
        }
      }
      await syncDir(dirname(target));
      return this.#stored(key, target, written.sha256);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Writes a chain key (the head, a sealed segment) whole and renames it into place. */
  async #replace(key: string, text: string): Promise<void> {
    const target = join(this.root, key);
    const tmp = await this.#temp();
    try {
      await copyInto(tmp, [Buffer.from(text)]);
      await mkdir(dirname(target), { recursive: true });
      await rename(tmp, target);
      await syncDir(dirname(target));
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async #writeSha256(key: string, sha256: string): Promise<void> {
    const path = this.#own("sha256", key);
    await mkdir(dirname(path), { recursive: true });
    const tmp = await this.#temp();
    await writeFile(tmp, sha256);
    await rename(tmp, path);
  }

  /** The sha256 checked when this store wrote `key`, if it did (a bucket copy has none). */
  async #sha256(key: string): Promise<string | undefined> {
    if (isOverwritableKey(key)) return undefined;
    const text = await readFile(this.#own("sha256", key), "utf8").catch(() => undefined);
    return text !== undefined && /^[0-9a-f]{64}$/.test(text) ? text : undefined;
  }

  async #temp(): Promise<string> {
    await mkdir(this.#own("tmp"), { recursive: true });
    this.#swept ??= this.#sweep();
    await this.#swept;
    return this.#own("tmp", `${process.pid}.${randomUUID()}`);
  }

  #swept: Promise<void> | undefined;

  /**
   * What runs killed half-way left, once per store: temporary files and multipart uploads older than the bucket's
   * lifecycle rule aborts an incomplete upload after (core's DEFAULT_RETENTION.abortMultipartDays), so no run still
   * writes them. Never a file under a key.
   */
  async #sweep(): Promise<void> {
    const before = Date.now() - DEFAULT_RETENTION.abortMultipartDays * 24 * 3600 * 1000;
    for (const area of ["tmp", "uploads"]) {
      const names = await readdir(this.#own(area)).catch(() => [] as string[]);
      for (const name of names) {
        const path = this.#own(area, name);
        const st = await stat(path).catch(() => undefined);
        if (st && st.mtimeMs < before) await rm(path, { recursive: true, force: true });
      }
    }
  }

  async #stored(key: string, path: string, sha256?: string): Promise<StoredObject> {
    return this.#statObject(key, await stat(path), sha256);
  }

  async get(key: string, options: { offset?: number; length?: number } = {}): Promise<GetResult | undefined> {
    const path = this.#path("download", key);
    await this.#ready("download", key);
    const handle = await open(path, "r").catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT" || e.code === "EISDIR" || e.code === "ENOTDIR") return undefined;
      throw e;
    });
    if (!handle) return undefined;
    const st = await handle.stat();
    if (!st.isFile()) {
      await handle.close();
      return undefined;
    }
    const ranged = options.offset !== undefined || options.length !== undefined;
    const offset = Math.min(options.offset ?? 0, st.size);
    const length = Math.max(0, Math.min(options.length ?? st.size - offset, st.size - offset));
    const stream = createReadStream("", { fd: handle, start: offset, end: offset + length - 1, highWaterMark: COPY_CHUNK });
    const body = length === 0 ? emptyStream(handle) : (Readable.toWeb(stream) as ReadableStream<Uint8Array>);
    return { ...this.#statObject(key, st, await this.#sha256(key)), body, ...(ranged ? { range: { offset, length } } : {}) };
  }

  #statObject(key: string, st: { size: number; mtime: Date; mtimeMs: number; ino: number }, sha256?: string): StoredObject {
    return { key, size: st.size, etag: weakEtag(st), uploaded: st.mtime, ...(sha256 ? { sha256 } : {}) };
  }

  async head(key: string): Promise<StoredObject | undefined> {
    const path = this.#path("inspect", key);
    await this.#ready("inspect", key);
    const st = await stat(path).catch(() => undefined);
    return st?.isFile() ? this.#statObject(key, st, await this.#sha256(key)) : undefined;
  }

  async list(prefix: string, options: { cursor?: string; delimiter?: string; limit?: number } = {}): Promise<ListPage> {
    await this.#ready("list", prefix);
    if (!prefix.startsWith("backups/") && prefix !== "backups" && prefix !== "") throw new JobError("usage", `list '${prefix}': expected a prefix under backups/`);
    const limit = Math.min(Math.max(1, options.limit ?? LIST_LIMIT), LIST_LIMIT);
    const keys = (await walk(this.root, "backups")).filter((k) => k.startsWith(prefix)).sort();
    const objects: StoredObject[] = [];
    const prefixes: string[] = [];
    let last: string | undefined;
    for (const key of keys) {
      if (options.cursor !== undefined && key <= options.cursor) continue;
      if (options.delimiter) {
        const cut = key.indexOf(options.delimiter, prefix.length);
        if (cut >= 0) {
          const group = key.slice(0, cut + options.delimiter.length);
          if (prefixes.at(-1) !== group) {
            if (objects.length + prefixes.length >= limit) return { objects, prefixes, truncated: true, cursor: last! };
            prefixes.push(group);
          }
          // Past every key of the group, so the next page does not list it again.
          last = `${group}\uffff`;
          continue;
        }
      }
      if (objects.length + prefixes.length >= limit) return { objects, prefixes, truncated: true, cursor: last! };
      const st = await stat(join(this.root, key)).catch(() => undefined);
      if (st) objects.push(this.#statObject(key, st));
      last = key;
    }
    return { objects, prefixes, truncated: false };
  }

  async listAll(prefix: string): Promise<StoredObject[]> {
    return listEvery(this, prefix);
  }

  async delete(key: string): Promise<void> {
    const path = this.#path("delete", key);
    await this.#ready("delete", key);
    if (!this.#admin)
      throw new JobError("auth", `delete '${key}': the job's role may not delete`, {
        hint: "open it with admin: true (the CLI does: whoever may write the directory may delete from it)",
      });
    await unlink(path).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "ENOENT") throw e;
    });
    await rm(this.#own("sha256", key), { force: true });
  }

  async createMultipart(key: string, _options: { contentType?: string } = {}): Promise<string> {
    this.#path("start multipart upload of", key);
    await this.#ready("start multipart upload of", key);
    const uploadId = randomUUID();
    await mkdir(this.#own("uploads", uploadId), { recursive: true });
    await writeFile(this.#own("uploads", uploadId, "key"), key);
    return uploadId;
  }

  /** The upload's directory, checked to belong to `key`; a `done` record when it was completed. */
  async #upload(operation: string, key: string, uploadId: string): Promise<{ dir: string; done?: StoredObject }> {
    if (!/^[0-9a-f-]{36}$/.test(uploadId)) throw new JobError("usage", `${operation} '${key}': '${uploadId.slice(0, 40)}' is not an upload id`);
    const dir = this.#own("uploads", uploadId);
    const owner = await readFile(join(dir, "key"), "utf8").catch(() => undefined);
    if (owner !== key) throw new JobError("notFound", `${operation} '${key}': the upload '${uploadId}' is gone`, { hint: "run the backup again" });
    const done = await readFile(join(dir, "done.json"), "utf8").catch(() => undefined);
    if (done === undefined) return { dir };
    const record = JSON.parse(done) as StoredObject;
    return { dir, done: { ...record, uploaded: new Date(record.uploaded) } };
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Body): Promise<{ partNumber: number; etag: string }> {
    const operation = `upload part ${partNumber} of`;
    await this.#ready(operation, key);
    const { dir, done } = await this.#upload(operation, key, uploadId);
    if (done) throw new JobError("failed", `${operation} '${key}': the upload '${uploadId}' is already complete`);
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10_000) throw new JobError("usage", `${operation} '${key}': part numbers are 1 to 10000`);
    // Opaque, as R2's part etags are; a part sent again is another file, and the completion names the one it keeps.
    const etag = randomUUID();
    const tmp = join(dir, `tmp-${etag}`);
    try {
      await copyInto(tmp, [body], { sync: false });
      await rename(tmp, join(dir, `part-${partNumber}.${etag}`));
      return { partNumber, etag };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async completeMultipart(key: string, uploadId: string, parts: { partNumber: number; etag: string }[]): Promise<StoredObject> {
    const operation = "complete multipart upload of";
    await this.#ready(operation, key);
    const { dir, done } = await this.#upload(operation, key, uploadId);
    // A completion retried after its answer was lost meets its own object.
    if (done) return done;
    const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber);
    if (sorted.length === 0) throw new JobError("usage", `${operation} '${key}': no parts`);
    const bodies: FileRange[] = [];
    for (const p of sorted) {
      const path = join(dir, `part-${p.partNumber}.${p.etag.replaceAll('"', "")}`);
      const st = /^[0-9a-f-]{36}$/.test(p.etag.replaceAll('"', "")) ? await stat(path).catch(() => undefined) : undefined;
      if (!st) throw new JobError("failed", `${operation} '${key}': part ${p.partNumber} with etag '${p.etag.slice(0, 40)}' was never uploaded`, { hint: "run the backup again" });
      bodies.push({ path, offset: 0, length: st.size });
    }
    const target = this.#path(operation, key);
    const tmp = await this.#temp();
    try {
      await copyInto(tmp, bodies);
      await mkdir(dirname(target), { recursive: true });
      try {
        await link(tmp, target);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        throw new HttpStatusError("failed", 409, `${operation} '${key}': the key exists with other content`, "run the backup again");
      }
      await syncDir(dirname(target));
      const stored = await this.#stored(key, target);
      await writeFile(join(dir, "done.json"), JSON.stringify(stored));
      for (const name of await readdir(dir)) if (name.startsWith("part-")) await rm(join(dir, name), { force: true });
      return stored;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    await this.#ready("abort multipart upload of", key);
    const { dir, done } = await this.#upload("abort multipart upload of", key, uploadId).catch(() => ({ dir: undefined, done: undefined }));
    if (dir && !done) await rm(dir, { recursive: true, force: true });
  }
}

/** Writes the bodies one after another into a new file at `path`, synced (unless `sync` is false): its size, and its sha256 when `hash`. */
async function copyInto(path: string, bodies: Body[], options: { sync?: boolean; hash?: boolean } = {}): Promise<{ size: number; sha256?: string }> {
  const sha = options.hash ? createHash("sha256") : undefined;
  let size = 0;
  const out = await open(path, "wx");
  try {
    const buffer = Buffer.allocUnsafe(COPY_CHUNK);
    for (const body of bodies) {
      if (body instanceof Uint8Array) {
        sha?.update(body);
        await out.write(body, 0, body.byteLength, size);
        size += body.byteLength;
        continue;
      }
      const input = await open(body.path, "r");
      try {
        for (let done = 0; done < body.length; ) {
          const { bytesRead } = await input.read(buffer, 0, Math.min(COPY_CHUNK, body.length - done), body.offset + done);
          if (bytesRead === 0) throw new JobError("failed", `upload from '${body.path}': the file ended ${body.length - done} bytes before the range`);
          const chunk = buffer.subarray(0, bytesRead);
          sha?.update(chunk);
          await out.write(chunk, 0, bytesRead, size);
          size += bytesRead;
          done += bytesRead;
        }
      } finally {
        await input.close();
      }
    }
    if (options.sync !== false) await out.sync();
  } finally {
    await out.close();
  }
  return { size, ...(sha ? { sha256: sha.digest("hex") } : {}) };
}

function sha256Of(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** An etag for an object the store did not write itself (a bucket copy): changes when the file does. */
function weakEtag(st: { size: number; mtimeMs: number; ino: number }): string {
  return createHash("md5").update(`${st.ino}:${st.size}:${st.mtimeMs}`).digest("hex");
}

/** Syncs a directory, so a new name in it survives a crash (best effort: some file systems refuse fsync on one). */
async function syncDir(dir: string): Promise<void> {
  await fsyncPath(dir).catch(() => {});
}

function emptyStream(handle: FileHandle): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async start(controller) {
      await handle.close();
      controller.close();
    },
  });
}

/** Every file under `root/<dir>`, as keys relative to `root` (`/`-separated). */
async function walk(root: string, dir: string): Promise<string[]> {
  const entries = await readdir(join(root, dir), { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT" || e.code === "ENOTDIR") return [];
    throw e;
  });
  const out: string[] = [];
  for (const e of entries) {
    const key = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...(await walk(root, key)));
    else if (e.isFile()) out.push(key);
  }
  return out;
}
