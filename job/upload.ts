import { open, type FileHandle } from "node:fs/promises";
import { MAX_PARTS, MAX_PARTS_IN_FLIGHT, MAX_SINGLE_PUT_BYTES, choosePartSize } from "../core/index.ts";
import { JobError, throwIfInterrupted } from "./errors.ts";
import { bodyLength, type BackupStore, type Body, type FileRange, type StoredObject } from "./store/types.ts";

/** Another upload's object holds the key (a backup run takes its set again under a later id). */
export class KeyTaken extends JobError {
  constructor(key: string, stored: number, sent: number) {
    super("integrity", `upload '${key}': the object stored under it has ${stored} bytes, this upload sent ${sent}`, {
      hint: "another upload wrote this key; nothing of this one is kept under it. Run again",
    });
    this.name = "KeyTaken";
  }
}

/**
 * Uploads a stream whose final size is not known in advance (compressed output): a stream that ends before
 * filling one part goes up as a single PUT with `X-Content-SHA256`, anything longer as an R2 multipart upload
 * of equal parts with at most 2 in flight (docs/design.md fact 2).
 *
 * With `spool` (a path in the temp dir) every byte is appended to that file and each part is sent as a range
 * of it, read back from disk (the page cache) as it goes out: no part is held in memory, whatever its size,
 * and a retried part is read again. Writes do not wait for the upload: the writer may finish long before the
 * last part is sent (a full backup's snapshot is released then). The file is the compressed copy the daily
 * promotion re-sends; the caller removes it otherwise. Without `spool` parts are buffered in memory:
 * (MAX_PARTS_IN_FLIGHT + 1) buffers, reused, and a write waits for a free slot.
 */
export class StreamUpload {
  readonly key: string;
  readonly partBytes: number;
  readonly #store: BackupStore;
  readonly #contentType: string;
  readonly #onPart: ((info: { partNumber: number; bytes: number }) => void) | undefined;
  readonly #spool: string | undefined;
  readonly #signal: AbortSignal | undefined;
  #file: FileHandle | undefined;
  /** Bytes written to the spool file. */
  #spooled = 0;
  /** Bytes handed to parts (of the spool file, or buffered): the size the completed object must have. */
  #sent = 0;
  readonly #pool: Buffer[] = [];
  #current: Buffer | undefined;
  #filled = 0;
  #uploadId: string | undefined;
  #nextPart = 1;
  #parts: { partNumber: number; etag: string }[] = [];
  #inFlight = new Set<Promise<void>>();
  #error: unknown;
  #done = false;
  /** The spool's part sender (`#pump`), while it runs. */
  #pumping = false;
  #pumped: Promise<void> = Promise.resolve();

  constructor(
    store: BackupStore,
    key: string,
    options: {
      partBytes?: number;
      contentType?: string;
      spool?: string;
      onPart?: (info: { partNumber: number; bytes: number }) => void;
      /** Checked before each part is started: once it is aborted, no part starts and the upload fails as `interrupted`. */
      signal?: AbortSignal;
    } = {},
  ) {
    this.#store = store;
    this.key = key;
    this.partBytes = options.partBytes ?? JOB_PART_BYTES;
    if (this.partBytes > MAX_SINGLE_PUT_BYTES) throw new JobError("usage", `upload '${key}': part size ${this.partBytes} is over the ${MAX_SINGLE_PUT_BYTES}-byte request limit`);
    this.#contentType = options.contentType ?? "application/octet-stream";
    this.#onPart = options.onPart;
    this.#spool = options.spool;
    this.#signal = options.signal;
  }

  /** An upload of a complete local file of `size` bytes: its parts are ranges of it, sent by `finish`. */
  static ofFile(store: BackupStore, key: string, path: string, size: number, options: { partBytes?: number; contentType?: string } = {}): StreamUpload {
    const upload = new StreamUpload(store, key, { ...options, spool: path });
    upload.#spooled = size;
    return upload;
  }

  /** Appends bytes; resolves when they are spooled, or buffered (then waiting for a free upload slot when a part is due). */
  async write(chunk: Uint8Array): Promise<void> {
    if (this.#error) throw this.#error;
    if (this.#spool !== undefined) {
      this.#file ??= await open(this.#spool, "wx");
      for (let offset = 0; offset < chunk.length; ) {
        const { bytesWritten } = await this.#file.write(chunk, offset, chunk.length - offset, this.#spooled);
        offset += bytesWritten;
        this.#spooled += bytesWritten;
      }
      if (this.#spooled - this.#sent >= this.partBytes) this.#pump();
      return;
    }
    let offset = 0;
    while (offset < chunk.length) {
      this.#current ??= this.#pool.pop() ?? Buffer.allocUnsafe(this.partBytes);
      const n = Math.min(chunk.length - offset, this.partBytes - this.#filled);
      this.#current.set(chunk.subarray(offset, offset + n), this.#filled);
      this.#filled += n;
      offset += n;
      if (this.#filled === this.partBytes) await this.#flushBuffer();
    }
  }

  /**
   * With a spool: sends its whole parts as slots free up, apart from `write`, so the writer (the compressor) is
   * not held back by the upload. One pump at a time; it stops at `finish` (which sends the rest) or `abort`,
   * both of which wait for it, and its error fails them and the next `write`.
   */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    this.#pumped = (async () => {
      try {
        while (!this.#error && !this.#done && this.#spooled - this.#sent >= this.partBytes)
          await this.#sendPart({ path: this.#spool!, offset: this.#sent, length: this.partBytes });
      } catch (e) {
        this.#error ??= e;
      } finally {
        this.#pumping = false;
      }
    })();
  }

  async #flushBuffer(): Promise<void> {
    const buffer = this.#current!;
    const bytes = this.#filled;
    this.#current = undefined;
    this.#filled = 0;
    await this.#sendPart(buffer.subarray(0, bytes), () => this.#pool.push(buffer));
  }

  /** Starts the next part once a slot is free (at most MAX_PARTS_IN_FLIGHT); `release` runs when it is done. */
  async #sendPart(body: Body, release?: () => void): Promise<void> {
    if (this.#uploadId === undefined) this.#uploadId = await this.#store.createMultipart(this.key, { contentType: this.#contentType });
    while (this.#inFlight.size >= MAX_PARTS_IN_FLIGHT) await Promise.race(this.#inFlight);
    if (this.#error) throw this.#error;
    throwIfInterrupted(this.#signal, `upload '${this.key}'`);
    const partNumber = this.#nextPart++;
    if (partNumber > MAX_PARTS)
      throw new JobError("failed", `upload '${this.key}': more than ${MAX_PARTS} parts of ${this.partBytes} bytes`, { hint: "the part size was chosen too small for this object" });
    const bytes = bodyLength(body);
    this.#sent += bytes;
    const task = this.#store
      .uploadPart(this.key, this.#uploadId, partNumber, body)
      .then((part) => {
        this.#parts.push({ partNumber: part.partNumber ?? partNumber, etag: part.etag });
        this.#onPart?.({ partNumber, bytes });
      })
      .catch((e: unknown) => {
        this.#error ??= e;
      })
      .finally(() => {
        this.#inFlight.delete(task);
        release?.();
      });
    this.#inFlight.add(task);
  }

  /**
   * Ends the upload. `sha256` is of all the bytes written: checked by R2 on a single PUT; on a multipart
   * upload R2 takes no checksum, so the manifest's sha256 is what restore checks. A spool file is left in
   * place, not synced: it is read back (or re-sent to daily/) from the page cache by this run alone.
   */
  async finish(sha256: string): Promise<StoredObject> {
    if (this.#done) throw new JobError("failed", `upload '${this.key}': finished twice`);
    this.#done = true;
    try {
      if (this.#spool !== undefined) {
        await this.#pumped;
        if (this.#error) throw this.#error;
        await this.#file?.close();
        this.#file = undefined;
        const rest = (): FileRange => ({ path: this.#spool!, offset: this.#sent, length: this.#spooled - this.#sent });
        if (this.#uploadId === undefined && this.#spooled <= this.partBytes) {
          if (this.#spooled === 0) return await this.#store.put(this.key, new Uint8Array(0), { sha256, contentType: this.#contentType });
          return await this.#store.put(this.key, rest(), { sha256, contentType: this.#contentType });
        }
        while (this.#spooled - this.#sent > this.partBytes) await this.#sendPart({ ...rest(), length: this.partBytes });
        if (this.#spooled > this.#sent) await this.#sendPart(rest());
      } else {
        if (this.#uploadId === undefined) {
          const body = this.#current ? this.#current.subarray(0, this.#filled) : new Uint8Array(0);
          return await this.#store.put(this.key, body, { sha256, contentType: this.#contentType });
        }
        if (this.#filled > 0) await this.#flushBuffer();
      }
      while (this.#inFlight.size > 0) await Promise.race(this.#inFlight);
      if (this.#error) throw this.#error;
      const parts = [...this.#parts].sort((a, b) => a.partNumber - b.partNumber);
      const object = await this.#store.completeMultipart(this.key, this.#uploadId!, parts);
      // A completion retried after its answer was lost may find another upload's object under the key (R2's part
      // etags are opaque, so only the part count tells them apart): its size must be what this one sent.
      if (object.size !== this.#sent) throw new KeyTaken(this.key, object.size, this.#sent);
      return object;
    } finally {
      this.#release();
    }
  }

  /** Abandons the upload: waits for parts in flight, then aborts the multipart upload (best effort). */
  async abort(): Promise<void> {
    this.#done = true;
    await this.#pumped;
    await Promise.allSettled([...this.#inFlight]);
    await this.#file?.close().catch(() => {});
    this.#file = undefined;
    const uploadId = this.#uploadId;
    this.#uploadId = undefined;
    this.#release();
    if (uploadId !== undefined) await this.#store.abortMultipart(this.key, uploadId).catch(() => {});
  }

  #release(): void {
    this.#current = undefined;
    this.#pool.length = 0;
  }
}

/**
 * The job's preferred part size: R2's minimum, 5 MiB, keeps the (2 in flight + 1 filling) part buffers at 15 MiB,
 * most of what an in-process backup may add to its host (32 MiB, issue 16); parts grow for huge objects.
 */
export const JOB_PART_BYTES = 5 * 1024 * 1024;

/** The part size for a compressed stream of an input of `uncompressedBytes` (zstd output can exceed its input a little). */
export function partSizeFor(uncompressedBytes: number, preferred?: number): number {
  const margin = Math.ceil(uncompressedBytes / 100) + 1024 * 1024;
  return choosePartSize(uncompressedBytes + margin, preferred ?? JOB_PART_BYTES);
}

/** Uploads a local file of known size and sha256 (the daily promotion re-sends the kept temp files): parts are ranges of it. */
export async function uploadFile(
  store: BackupStore,
  key: string,
  path: string,
  sha256: string,
  options: { size: number; partBytes?: number; contentType?: string },
): Promise<StoredObject> {
  const upload = StreamUpload.ofFile(store, key, path, options.size, {
    partBytes: options.partBytes ?? choosePartSize(options.size, JOB_PART_BYTES),
    ...(options.contentType ? { contentType: options.contentType } : {}),
  });
  try {
    return await upload.finish(sha256);
  } catch (e) {
    await upload.abort();
    throw e;
  }
}
