import { createHash } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants, createZstdCompress } from "node:zlib";

/**
 * The streaming pipeline of the job: source bytes -> sha256 and size -> zstd (level 3) -> sha256 and size
 * -> a local temp file (kept for the daily promotion) and a consumer (the uploader), chunk by chunk. Nothing
 * holds more than a chunk, so memory stays flat whatever the database size.
 */

/** Sizes and hashes of one object: `size`/`sha256` as stored (compressed), the others of the input. */
export interface Digest {
  size: number;
  sha256: string;
  uncompressedSize: number;
  uncompressedSha256: string;
}

/** The consumer of the compressed chunks, in order; its promise applies backpressure. */
export type ChunkSink = (chunk: Buffer) => Promise<void>;

/** Counts and hashes bytes passing through, and reports progress. */
function tap(state: { bytes: number; hash: ReturnType<typeof createHash> }, onBytes?: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      state.bytes += chunk.length;
      state.hash.update(chunk);
      onBytes?.(state.bytes);
      done(null, chunk);
    },
  });
}

export interface CompressOptions {
  /** Where the compressed bytes are also written (kept until the daily promotion is done). */
  tmpFile?: string;
  /** zstd level; 3 is zstd's own default and the benchmark's baseline. */
  level?: number;
  /** Reports uncompressed bytes read so far. */
  onProgress?: (uncompressedBytes: number) => void;
}

/**
 * Compresses `source` with zstd while hashing both sides, hands every compressed chunk to `sink` (awaited,
 * so a slow upload slows the reader), and optionally writes the compressed bytes to `tmpFile`.
 */
export async function compressStream(source: Readable | AsyncIterable<Buffer | string>, sink: ChunkSink, options: CompressOptions = {}): Promise<Digest> {
  const input = { bytes: 0, hash: createHash("sha256") };
  const output = { bytes: 0, hash: createHash("sha256") };
  let file: FileHandle | undefined;
  if (options.tmpFile) file = await open(options.tmpFile, "wx");
  try {
    const readable = source instanceof Readable ? source : Readable.from(source);
    await pipeline(
      readable,
      tap(input, options.onProgress),
      createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: options.level ?? 3 } }),
      tap(output),
      async function consume(chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          if (file) await file.write(chunk);
          await sink(chunk);
        }
      },
    );
    if (file) await file.sync();
  } finally {
    await file?.close();
  }
  return {
    size: output.bytes,
    sha256: output.hash.digest("hex"),
    uncompressedSize: input.bytes,
    uncompressedSha256: input.hash.digest("hex"),
  };
}

const READ_BYTES = 256 * 1024;

/**
 * `compressStream` for a local file (the database snapshot), reading into two reused buffers: the input
 * side allocates nothing per chunk, which keeps the garbage (and so the peak RSS) flat for any size.
 * A buffer is reused only after zstd has consumed it (its write callback).
 */
export async function compressFile(path: string, sink: ChunkSink, options: CompressOptions = {}): Promise<Digest> {
  const input = { bytes: 0, hash: createHash("sha256") };
  const output = { bytes: 0, hash: createHash("sha256") };
  const source = await open(path, "r");
  let file: FileHandle | undefined;
  const zstd = createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: options.level ?? 3 }, chunkSize: 64 * 1024 });
  try {
    if (options.tmpFile) file = await open(options.tmpFile, "wx");
    const consume = (async () => {
      for await (const chunk of zstd as AsyncIterable<Buffer>) {
        output.bytes += chunk.length;
        output.hash.update(chunk);
        if (file) await file.write(chunk);
        await sink(chunk);
      }
    })();
    let failure: unknown;
    const failed = consume.then(
      () => undefined,
      (e: unknown) => {
        failure = e;
        zstd.destroy(e as Error);
      },
    );
    const buffers = [Buffer.allocUnsafe(READ_BYTES), Buffer.allocUnsafe(READ_BYTES)];
    const pending: (Promise<void> | undefined)[] = [undefined, undefined];
    for (let i = 0; ; i++) {
      const slot = i % 2;
      if (pending[slot]) await Promise.race([pending[slot], failed]);
      if (failure) throw failure;
      const { bytesRead } = await source.read(buffers[slot]!, 0, READ_BYTES, null);
      if (bytesRead === 0) break;
      const chunk = buffers[slot]!.subarray(0, bytesRead);
      input.bytes += bytesRead;
      input.hash.update(chunk);
      options.onProgress?.(input.bytes);
      pending[slot] = new Promise<void>((resolve, reject) => zstd.write(chunk, (e) => (e ? reject(e) : resolve())));
      // A write that fails is reported through `consume` as well; avoid an unhandled rejection here.
      pending[slot]!.catch(() => {});
    }
    await Promise.race([Promise.all(pending), failed]);
    if (failure) throw failure;
    zstd.end();
    await consume;
    if (file) await file.sync();
  } catch (e) {
    zstd.destroy();
    throw e;
  } finally {
    await source.close().catch(() => {});
    await file?.close().catch(() => {});
  }
  return {
    size: output.bytes,
    sha256: output.hash.digest("hex"),
    uncompressedSize: input.bytes,
    uncompressedSha256: input.hash.digest("hex"),
  };
}

/** sha256 and size of a local file, streamed. */
export async function hashFile(path: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash("sha256");
  let size = 0;
  const handle = await open(path, "r");
  try {
    for await (const chunk of handle.createReadStream({ highWaterMark: 1 << 20 })) {
      size += (chunk as Buffer).length;
      hash.update(chunk as Buffer);
    }
  } finally {
    await handle.close().catch(() => {});
  }
  return { size, sha256: hash.digest("hex") };
}
