import { createHash, type Hash } from "node:crypto";
import { close, open, write } from "node:fs";
import { Transform, Writable, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { availableParallelism } from "node:os";
import { createZstdDecompress, type ZstdOptions } from "node:zlib";
import { CONTENT_CHECKSUM, type FileEntry } from "../../core/index.ts";
import { JobError } from "../errors.ts";
import type { BackupStore } from "../store/types.ts";
import { hashFileOnThread } from "./hash-file.ts";
import { FRAME_BYTES } from "../stream.ts";
import { frameAligned, parallelFrameDecoder } from "../zstd-frames.ts";

/** Frames decoded at once in a restore of a database (parallelFrameDecoder): the libuv pool's 4 threads at most. */
const DECODE_IN_FLIGHT = Math.min(4, Math.max(2, availableParallelism()));

/**
 * The download adapter of restore: streams one stored object, resuming an interrupted transfer with a
 * `Range` request from the last byte received, and checks it against the manifest while it passes through:
 * the size and sha256 of the bytes as stored, the decompressed size, and the decompressed bytes themselves by
 * zstd's frame checksums (from 0.3 on) or by their sha256 (what older manifests record). Nothing is buffered whole.
 */

/** What the manifest promises about one object (a `FileEntry`'s checks). */
export type ExpectedObject = Pick<FileEntry, "size" | "sha256" | "compression" | "uncompressedSize" | "contentChecksum" | "uncompressedSha256">;

export interface DownloadOptions {
  /** Interruptions survived per object, each resumed with `Range` (default 5). */
  resumes?: number;
  /** Called with the stored bytes received so far. */
  onBytes?: (received: number) => void;
  /** Called on each resume (for logs and tests). */
  onResume?: (info: { key: string; offset: number; reason: string }) => void;
  /**
   * The object is a database compressed by `compressFile` (frames of FRAME_BYTES): decoded several frames at once
   * (job/zstd-frames.ts, parallelFrameDecoder) when its manifest says every frame carries its checksum (0.3 on).
   */
  databaseFrames?: boolean;
  /** Sees every stored byte once, in order (the stored sha256 is taken here, without a stream stage). */
  onChunk?: (chunk: Uint8Array) => void;
  /**
   * For a file sink and a manifest that records the decompressed sha256 (before 0.3): check it by hashing the
   * written file on a worker thread, started once the download is complete, instead of on the main thread while
   * the bytes stream in. The result's `fileCheck` must then be awaited before the file is trusted or changed.
   */
  deferFileHash?: boolean;
}

export interface DownloadResult {
  key: string;
  /** Stored (compressed) bytes received, counting each byte once. */
  bytes: number;
  uncompressedBytes: number;
  /** How many times the transfer was resumed with `Range`. */
  resumes: number;
  /** With `deferFileHash`: the running check of the file's sha256 against the manifest. */
  fileCheck?: FileCheck;
}

/** A decompressed file's sha256 being checked off the main thread. */
export interface FileCheck {
  /** Resolves when the file matches the manifest; rejects with ObjectIntegrityError when it does not. Marked handled. */
  done: Promise<void>;
  /** Stops the check (when something else failed first). */
  cancel(): Promise<void>;
}

/** A checksum, size or format problem with a stored object: the object is corrupt or truncated. */
export class ObjectIntegrityError extends JobError {
  readonly key: string;
  constructor(key: string, reason: string, options: { hint?: string; cause?: unknown } = {}) {
    super("integrity", `verify object '${key}': ${reason}`, options);
    this.key = key;
  }
}

/** A manifest names an object the bucket does not hold. */
export class ObjectMissingError extends JobError {
  readonly key: string;
  constructor(key: string) {
    super("notFound", `download object '${key}': the manifest lists it but the bucket does not hold it`);
    this.key = key;
  }
}

/**
 * The stored bytes of `key`, exactly `size` of them, as one stream. A body that breaks off (a reset
 * connection, a proxy cutting the response) is continued with `Range: bytes=<received>-`; an object
 * whose stored size differs from the manifest fails at once, since no retry can fix it.
 */
export async function* readStoredObject(store: BackupStore, key: string, size: number, options: DownloadOptions = {}): AsyncGenerator<Uint8Array> {
  const maxResumes = options.resumes ?? 5;
  let received = 0;
  let resumes = 0;
  for (;;) {
    const res = received === 0 ? await store.get(key) : await store.get(key, { offset: received });
    if (!res) throw new ObjectMissingError(key);
    if (res.size !== size) {
      await res.body.cancel().catch(() => {});
      throw new ObjectIntegrityError(key, `the stored object is ${res.size} bytes, the manifest says ${size}`, {
        hint: res.size < size ? "the object is truncated in the bucket" : "the object was replaced or appended to",
      });
    }
    let skip = 0;
    if (received > 0 && res.range?.offset !== received) {
      // The server ignored the Range and sent the whole object: drop what we already have.
      skip = received;
    }
    let reason = "";
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        let chunk = value;
        if (skip > 0) {
          if (chunk.byteLength <= skip) {
            skip -= chunk.byteLength;
            continue;
          }
          chunk = chunk.subarray(skip);
          skip = 0;
        }
        if (received + chunk.byteLength > size) {
          throw new ObjectIntegrityError(key, `received more than the ${size} bytes the manifest lists`);
        }
        received += chunk.byteLength;
        options.onChunk?.(chunk);
        options.onBytes?.(received);
        yield chunk;
      }
    } catch (e) {
      if (e instanceof JobError) throw e;
      reason = e instanceof Error ? ((e.cause as Error | undefined)?.message ?? e.message) : String(e);
    } finally {
      reader.releaseLock();
    }
    if (received === size) return;
    if (!reason) reason = `the response ended after ${received} of ${size} bytes`;
    resumes++;
    if (resumes > maxResumes) {
      throw new ObjectIntegrityError(key, `the download was cut off ${resumes} times, last after ${received} of ${size} bytes (${reason})`, {
        hint: "check the network path to the Worker and run the restore again",
      });
    }
    options.onResume?.({ key, offset: received, reason });
    await res.body.cancel().catch(() => {});
  }
}

/** The sha256 of an object's stored bytes, streamed (used to diagnose a failed decode). */
export async function hashStoredObject(store: BackupStore, key: string, size: number, options: DownloadOptions = {}): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of readStoredObject(store, key, size, { ...(options.resumes === undefined ? {} : { resumes: options.resumes }) })) hash.update(chunk);
  return hash.digest("hex");
}

/**
 * The end of a restore's download: hashes each chunk (unless `hash` is false) and writes it to a new file
 * (created exclusively). One stage instead of a hashing transform plus a WriteStream, so a 1 GiB restore
 * spends less on streams.
 */
export class HashingFileSink extends Writable {
  readonly hash: Hash | undefined;
  bytes = 0;
  /** Decompressor buffers freed as soon as they were on disk (see `releaseBuffersOf`). */
  released = 0;
  readonly #path: string;
  readonly #releaseFrom: { _outBuffer?: unknown } | undefined;
  #fd: number | undefined;

  /**
   * `releaseBuffersOf`: the zlib decompressor feeding this sink. zlib hands out slices of one output buffer
   * until it is full, then allocates the next; once the slice that ends a buffer is on disk, every slice of
   * it is (writes are in order and this sink is their last reader), so the buffer is freed at once with
   * `ArrayBuffer.prototype.transfer(0)` instead of at a later GC. V8 collects such buffers only after ~64 MiB
   * of them pile up, and every fresh page costs a fault: at 1 GiB this halves the restore's page faults and
   * cuts its download time by about a quarter (bench/results, restore). A buffer is freed only when it has
   * the size of the decompressor's buffers and the decompressor visibly writes to another one (its
   * `_outBuffer`); should a Node release change that field, nothing is freed and the restore is only slower.
   * Only for a sink that the decompressor alone feeds.
   */
  constructor(path: string, options: { hash?: boolean; releaseBuffersOf?: Transform; releaseWritten?: boolean } = {}) {
    super({ highWaterMark: 1 << 20 });
    this.#path = path;
    this.hash = options.hash === false ? undefined : createHash("sha256");
    this.#releaseFrom = options.releaseBuffersOf as { _outBuffer?: unknown } | undefined;
    this.#releaseWritten = options.releaseWritten === true;
  }

  readonly #releaseWritten: boolean;

  #release(chunk: Buffer): void {
    if (this.#releaseWritten) {
      // Each chunk is a decoded frame in a buffer of its own (parallelFrameDecoder): freed once it is on disk.
      const buffer = chunk.buffer;
      if (buffer instanceof ArrayBuffer && buffer.byteLength >= 64 * 1024) {
        try {
          buffer.transfer(0);
          this.released++;
        } catch {
          // Not detachable: the GC frees it later.
        }
      }
      return;
    }
    const buffer = chunk.buffer;
    if (!this.#releaseFrom || !(buffer instanceof ArrayBuffer) || chunk.byteOffset + chunk.byteLength !== buffer.byteLength) return;
    const current = this.#releaseFrom._outBuffer;
    if (!(current instanceof Uint8Array) || current.buffer === buffer || current.buffer.byteLength !== buffer.byteLength) return;
    try {
      buffer.transfer(0);
      this.released++;
    } catch {
      // Not detachable (a pooled Buffer, e.g. with a raised Buffer.poolSize): the GC frees it later.
    }
  }

  override _construct(done: (e?: Error | null) => void): void {
    open(this.#path, "wx", (e, fd) => {
      this.#fd = fd;
      done(e);
    });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    this.hash?.update(chunk);
    this.bytes += chunk.byteLength;
    const writeAll = (offset: number): void => {
      write(this.#fd!, chunk, offset, chunk.byteLength - offset, null, (e, n) => {
        if (e) return done(e);
        if (offset + n < chunk.byteLength) return writeAll(offset + n);
        this.#release(chunk);
        done();
      });
    };
    writeAll(0);
  }

  override _destroy(error: Error | null, done: (e?: Error | null) => void): void {
    if (this.#fd === undefined) {
      done(error);
      return;
    }
    close(this.#fd, (e) => done(error ?? e));
  }

  override _final(done: (e?: Error | null) => void): void {
    done();
  }
}

/** A pass-through stream that counts (and unless `hash` is false, hashes) what flows through it. */
export class HashTap extends Transform {
  readonly hash: Hash | undefined;
  bytes = 0;
  constructor(options: { hash?: boolean; highWaterMark?: number } = {}) {
    super({ highWaterMark: options.highWaterMark ?? 1 << 20 });
    this.hash = options.hash === false ? undefined : createHash("sha256");
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash?.update(chunk);
    this.bytes += chunk.byteLength;
    done(null, chunk);
  }
}

/**
 * Downloads `key` into `sink` (a file path, created exclusively, or a Writable), decompressing zstd on
 * the way, and checks what the manifest promises (ExpectedObject). Throws ObjectIntegrityError naming the
 * object on any mismatch or undecodable data; the caller discards what was written.
 */
export async function downloadObject(store: BackupStore, key: string, expected: ExpectedObject, sink: string | Writable, options: DownloadOptions = {}): Promise<DownloadResult> {
  let resumes = 0;
  const stored = { hash: createHash("sha256"), bytes: 0 };
  const source = readStoredObject(store, key, expected.size, {
    ...options,
    onChunk: (chunk) => {
      stored.hash.update(chunk);
      stored.bytes += chunk.byteLength;
    },
    onResume: (info) => {
      resumes++;
      options.onResume?.(info);
    },
  });
  // 256 KiB output chunks rather than zlib's 16 KiB (which costs 3x the CPU at 1 GiB), and 1 MiB between the
  // stages so the network, zstd (on the libuv pool) and the writes overlap. Larger buffers bought no speed
  // in the bench and only raised the peak RSS (target: 200 MiB).
  const checked = expected.contentChecksum === CONTENT_CHECKSUM;
  const parallel = expected.compression === "zstd" && checked && options.databaseFrames === true;
  const decompress =
    expected.compression !== "zstd"
      ? undefined
      : parallel
        ? parallelFrameDecoder({ maxFrameBytes: FRAME_BYTES, inFlight: DECODE_IN_FLIGHT, requireChecksums: true })
        : createZstdDecompress({ chunkSize: 256 << 10, highWaterMark: 1 << 20 } as ZstdOptions);
  // The decompressed bytes are hashed only for a manifest that records their sha256 (before 0.3); from 0.3 on
  // the decoder checks every frame's content checksum, and a frame without one is refused (job/zstd-frames.ts).
  // (Stored uncompressed, the bytes are the stored ones, checked by their sha256.)
  const plainSha256 = expected.uncompressedSha256;
  const deferred = typeof sink === "string" && options.deferFileHash === true && plainSha256 !== undefined;
  const hashPlain = plainSha256 !== undefined && !deferred;
  const plain =
    typeof sink === "string"
      ? new HashingFileSink(sink, { hash: hashPlain, ...(parallel ? { releaseWritten: true } : decompress ? { releaseBuffersOf: decompress } : {}) })
      : undefined;
  const tap = plain ? undefined : new HashTap({ hash: hashPlain });
  // The decoder gets the stream frame by frame (job/zstd-frames.ts): Node's loses its place when a network chunk
  // ends inside a frame's last bytes.
  const stages: Writable[] = [
    ...(decompress ? (parallel ? [decompress] : [frameAligned({ requireChecksums: checked }), decompress]) : []),
    ...(tap ? [tap, sink as Writable] : [plain!]),
  ];
  try {
    await pipeline(source, ...(stages as [Transform, Writable]));
  } catch (e) {
    if (e instanceof ObjectIntegrityError || e instanceof ObjectMissingError) throw e;
    if (e instanceof JobError && e.kind !== "integrity") throw e;
    if (!(e instanceof JobError) && (e as { syscall?: string }).syscall) throw e; // a local file error (ENOSPC, EACCES)
    // The bytes did not decompress or did not apply. Say whether they are the bytes the manifest describes:
    // a checksum mismatch is the clearer diagnosis of a corrupt object than the decoder's complaint.
    const actual = await hashStoredObject(store, key, expected.size, options);
    const why = e instanceof Error ? e.message : String(e);
    if (actual !== expected.sha256) {
      throw new ObjectIntegrityError(key, `sha256 ${actual} does not match the manifest's ${expected.sha256} (${why})`, { cause: e });
    }
    if (e instanceof JobError) throw e;
    throw new ObjectIntegrityError(key, decompress ? `the stored bytes match the manifest but do not decode: ${why}` : why, { cause: e });
  }
  const storedSha = stored.hash.digest("hex");
  if (storedSha !== expected.sha256) {
    throw new ObjectIntegrityError(key, `sha256 ${storedSha} does not match the manifest's ${expected.sha256}`);
  }
  const plainBytes = plain ? plain.bytes : tap!.bytes;
  if (plainBytes !== expected.uncompressedSize) {
    throw new ObjectIntegrityError(key, `decompressed to ${plainBytes} bytes, the manifest says ${expected.uncompressedSize}`);
  }
  if (plainSha256 === undefined) return { key, bytes: stored.bytes, uncompressedBytes: plainBytes, resumes };
  if (deferred && typeof sink === "string") return { key, bytes: stored.bytes, uncompressedBytes: plainBytes, resumes, fileCheck: checkFileSha256(key, sink, plainSha256) };
  const plainSha = (plain ? plain.hash! : tap!.hash!).digest("hex");
  if (plainSha !== plainSha256) throw decompressedMismatch(key, plainSha, plainSha256);
  return { key, bytes: stored.bytes, uncompressedBytes: plainBytes, resumes };
}

function decompressedMismatch(key: string, actual: string, expected: string): ObjectIntegrityError {
  return new ObjectIntegrityError(key, `decompressed sha256 ${actual} does not match the manifest's ${expected}`);
}

/** Starts hashing the file `key` was decompressed to on a worker thread, to compare with the manifest. */
function checkFileSha256(key: string, path: string, expected: string): FileCheck {
  const hashing = hashFileOnThread(path);
  const done = hashing.done.then(({ sha256 }) => {
    if (sha256 !== expected) throw decompressedMismatch(key, sha256, expected);
  });
  done.catch(() => {});
  return { done, cancel: hashing.cancel };
}
