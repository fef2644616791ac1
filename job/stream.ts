import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { availableParallelism } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { constants, createZstdCompress, zstdCompressSync, type ZstdCompress } from "node:zlib";
import { pageAlignedBuffers } from "./aligned.ts";
import { JobError } from "./errors.ts";
import type { Pins } from "./pinned.ts";

/**
 * The streaming pipeline of the job: source bytes -> size -> zstd (each frame with the checksum of its content)
 * -> sha256 and size -> a consumer (the uploader, which spools them to the work dir: job/upload.ts), chunk by
 * chunk. Nothing holds more than a few chunks, so memory stays flat whatever the database size.
 *
 * The input is not hashed: zstd's frame checksums (the low 32 bits of XXH64 of each frame's input, taken by the
 * compressor from the very buffer it compresses) are what a restore checks the decompressed bytes by
 * (core/manifest.ts CONTENT_CHECKSUM), and the sha256 of the stored bytes is the object's identity. A sha256 of the
 * input was 5-9% of a full backup's CPU on the AMD VM (~0.8 s per GiB), and 1 GiB took 1.6 s to hash on the Intel
 * VM (issue 16).
 */

/** Sizes of one object and the sha256 of its stored (compressed) bytes. */
export interface Digest {
  size: number;
  sha256: string;
  uncompressedSize: number;
}

/** The zstd parameters every compressed object shares: each frame carries the checksum of its content. */
const CHECKED_FRAMES = { [constants.ZSTD_c_checksumFlag]: 1 };

/**
 * The consumer of the compressed chunks, in order; its promise applies backpressure. A chunk is valid only until
 * that promise resolves: `compressFile` frees its memory then, so a sink that keeps bytes copies them.
 */
export type ChunkSink = (chunk: Buffer) => Promise<void>;

/** Counts (and with `hash`, hashes) bytes passing through, and reports progress. */
function tap(state: { bytes: number; hash?: ReturnType<typeof createHash> }, onBytes?: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      state.bytes += chunk.length;
      state.hash?.update(chunk);
      onBytes?.(state.bytes);
      done(null, chunk);
    },
  });
}

export interface CompressOptions {
  /** zstd level (default ZSTD_LEVEL). */
  level?: number;
  /** Reports uncompressed bytes read so far. */
  onProgress?: (uncompressedBytes: number) => void;
}

/**
 * Compresses `source` with zstd (one frame, with its content checksum) while counting the input and hashing the
 * output, hands every compressed chunk to `sink` (awaited, so a slow upload slows the reader).
 */
export async function compressStream(source: Readable | AsyncIterable<Buffer | string>, sink: ChunkSink, options: CompressOptions = {}): Promise<Digest> {
  const input = { bytes: 0 };
  const output = { bytes: 0, hash: createHash("sha256") };
  const readable = source instanceof Readable ? source : Readable.from(source);
  await pipeline(
    readable,
    tap(input, options.onProgress),
    createZstdCompress({ params: { ...CHECKED_FRAMES, [constants.ZSTD_c_compressionLevel]: options.level ?? ZSTD_LEVEL } }),
    tap(output),
    async function consume(chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) await sink(chunk);
    },
  );
  return {
    size: output.bytes,
    sha256: output.hash.digest("hex"),
    uncompressedSize: input.bytes,
  };
}

/**
 * The zstd level of the job's output: 1. On the LiveStore-shaped benchmark database it stores ~5% more bytes
 * than level 3 (zstd's default) for half the CPU, and still ~0.7x what Litestream stores (bench/results).
 */
export const ZSTD_LEVEL = 1;

/**
 * A database file is compressed as independent zstd frames of this many input bytes, several at once on the
 * libuv pool. 1 MiB is a multiple of every power-of-two output buffer up to 1 MiB, so each frame but the last
 * ends exactly where a decoder's output buffer fills: Node's streaming `createZstdDecompress` stops at a frame
 * that ends with room left in its buffer and input after it (it drops or misreads what follows), and frames
 * aligned this way are read whole by it when it is fed frame by frame (as a restore does: job/zstd-frames.ts; a
 * network chunk that ends inside a frame's checksum loses it the rest otherwise), by `zstdDecompressSync` and by
 * `zstd -d` (test/job/snapshot-stream.test.ts).
 * Keep it so: any whole-buffer `zstdDecompressSync` of a backup depends on it (a frame size that is not a
 * multiple of its buffer would be read short, caught by the size check).
 */
export const FRAME_BYTES = 1024 * 1024;

/**
 * The window of every frame of `compressFile`: the frame itself (log2 of FRAME_BYTES). At level 1 with no size
 * pledged, zstd takes a 512 KiB window, and its input buffer (window + one block) then wraps inside every 1 MiB
 * frame: from there on it matches through its slower "extDict" path (~45% of its time in the profile). With the
 * window the size of the frame, a frame never wraps: ~10% fewer instructions for the same output (callgrind on
 * 32 MiB of the benchmark database: 1,108 M against 1,005 M, 7.43 MB against 7.42 MB). A decoder needs a 1 MiB window,
 * far under the 128 MiB every zstd decoder accepts by default.
 */
export const FRAME_WINDOW_LOG = Math.log2(FRAME_BYTES);

/** Frames compressed at once by default: one per core, at most 4 (the libuv pool's default size). */
export function defaultCompressThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/**
 * Checks a CPU cap: a number of cores above 0 (0.5 is half of one), at most 64. `what` names it in the error
 * (`flag '--cpu'` for the CLI, `option 'cpu'` for the library). Throws a usage error (exit 2) otherwise.
 */
export function parseCpuShare(value: string | number, what = "option 'cpu'"): number {
  const n = typeof value === "number" ? value : value.trim() === "" ? Number.NaN : Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 64) {
    throw new JobError("usage", `parse ${what}: '${value}' is not a number of cores above 0 and at most 64`, { hint: "e.g. --cpu 0.5 for half a core, --cpu 1 for one" });
  }
  return n;
}

/**
 * Paces work to an average CPU share: `wait()` sleeps while the process has used more CPU time (all its
 * threads, from `process.cpuUsage`) than `cores` x the wall time since the pacer started.
 */
export class CpuPacer {
  readonly cores: number;
  readonly #start = performance.now();
  readonly #cpuStart = process.cpuUsage();
  constructor(cores: number) {
    this.cores = parseCpuShare(cores);
  }
  /** The wall time to sleep now to bring the share back to the cap (0 when under it). */
  debtMs(): number {
    const u = process.cpuUsage(this.#cpuStart);
    const cpuMs = (u.user + u.system) / 1000;
    return Math.max(0, cpuMs / this.cores - (performance.now() - this.#start));
  }
  async wait(): Promise<void> {
    const ms = this.debtMs();
    if (ms >= 1) await sleep(ms);
  }
}

export interface CompressFileOptions extends CompressOptions {
  /** Frames compressed at once (default `defaultCompressThreads()`; with `cpu` at most its ceiling). */
  threads?: number;
  /** A cap on the process's average CPU share while compressing, in cores (e.g. 0.5); unset: no cap. */
  cpu?: number;
  /** The run's pins: a pinned snapshot at `path` is read from the live file it pins (job/pinned.ts). */
  pins?: Pins;
}

/**
 * `compressStream` for a local file (the database snapshot) in one pass: the file is read in FRAME_BYTES
 * blocks, each compressed as its own zstd frame (with its content checksum) on the libuv pool (`threads` at
 * once), while this thread hashes the output as it is handed to `sink`, in order. Memory is bounded by
 * `threads + 2` blocks and their frames, whatever the file's size.
 */
export async function compressFile(path: string, sink: ChunkSink, options: CompressFileOptions = {}): Promise<Digest> {
  const input = { bytes: 0 };
  const output = { bytes: 0, hash: createHash("sha256") };
  const pacer = options.cpu === undefined ? undefined : new CpuPacer(options.cpu);
  const threads = Math.max(1, Math.min(options.threads ?? defaultCompressThreads(), pacer ? Math.ceil(pacer.cores) : 64));
  const params = {
    ...CHECKED_FRAMES,
    [constants.ZSTD_c_compressionLevel]: options.level ?? ZSTD_LEVEL,
    [constants.ZSTD_c_windowLog]: FRAME_WINDOW_LOG,
  };
  // A pinned snapshot (job/pinned.ts) is read from the live file it pins, up to its size.
  const pin = options.pins?.at(path);
  const length = pin?.bytes;
  const limit = length ?? Number.POSITIVE_INFINITY;
  const source = await open(pin ? pin.file : path, "r");
  const queue: { frame: Promise<Buffer[]>; block: Buffer; compressor: FrameCompressor }[] = [];
  // Input blocks and compressors are reused, and output buffers freed once consumed: V8 frees unreferenced
  // buffers only after ~64 MiB of them pile up, which in a host process would be memory taken from the app (issue 16).
  // At most `threads + 1` blocks are out at once (in the queue, and the one being read); they start on a page,
  // where the kernel copies the file into them ~3x faster (job/aligned.ts).
  const blocks = pageAlignedBuffers(threads + 1, FRAME_BYTES);
  const compressors: FrameCompressor[] = [];
  const all: FrameCompressor[] = [];
  try {
    const emit = async (frame: Buffer) => {
      output.bytes += frame.length;
      output.hash.update(frame);
      await sink(frame);
    };
    const next = async () => {
      const { frame, block, compressor } = queue.shift()!;
      const chunks = await frame;
      blocks.push(block);
      for (const chunk of chunks) await emit(chunk);
      compressor.release(chunks);
      compressors.push(compressor);
    };
    for (let position = 0; position < limit; ) {
      const block = blocks.pop() ?? Buffer.allocUnsafe(FRAME_BYTES);
      const want = Math.min(FRAME_BYTES, limit - position);
      let filled = 0;
      while (filled < want) {
        const { bytesRead } = await source.read(block, filled, want - filled, position + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled < want && length !== undefined) {
        throw new JobError("integrity", `compress '${path}': the file ended at ${position + filled} bytes, ${length} were expected`, {
          hint: "the database changed size under the backup; run it again",
        });
      }
      if (filled === 0) break;
      const chunk = block.subarray(0, filled);
      position += filled;
      input.bytes += filled;
      options.onProgress?.(input.bytes);
      await pacer?.wait();
      let compressor = compressors.pop();
      if (!compressor) all.push((compressor = new FrameCompressor(params)));
      const frame = compressor.frame(chunk);
      frame.catch(() => {}); // awaited in order below; an early failure must not go unhandled meanwhile
      queue.push({ frame, block, compressor });
      // One frame more than `threads` waits in the pool, so a core never idles while the next block is read.
      if (queue.length > threads) await next();
      if (filled < FRAME_BYTES) break;
    }
    while (queue.length) await next();
    // An empty file is one empty frame, as a streaming compressor writes it.
    if (input.bytes === 0) await emit(zstdCompressSync(Buffer.alloc(0), { params }));
  } finally {
    await Promise.allSettled(queue.map((q) => q.frame));
    for (const c of all) c.close();
    await source.close().catch(() => {});
  }
  return {
    size: output.bytes,
    sha256: output.hash.digest("hex"),
    uncompressedSize: input.bytes,
  };
}

/**
 * A zstd compressor kept for a whole file, one frame per block: every write is made with ZSTD_e_end (the
 * stream's default flush), so the block is one whole frame (the next write starts a new, independent one with
 * the same parameters), its size known to zstd: a single-segment frame that records its content size and
 * ends with its last data block and its content checksum. (Node's streaming decoder fails on a network chunk
 * that ends inside those last bytes, the checksum here, or the empty 3-byte block a frame written, then flushed,
 * ended with in 0.2.0: a restore feeds it frame by frame, job/zstd-frames.ts.)
 * libzstd sets up its workspace once per compressor, on whichever libuv thread first runs it; a compressor per
 * frame set it up 1,024 times per GiB across the pool's threads, and glibc kept ~26 MiB of those freed
 * workspaces in its per-thread arenas for good (measured in-process: RSS +32.6 MiB, +6.5 MiB with
 * MALLOC_ARENA_MAX=1; now the same without it).
 *
 * A frame's chunks are slices of the compressor's output buffer, which zlib fills frame after frame and
 * replaces by a new one when it is full. `release` (after the frame's chunks are consumed, and before the
 * compressor takes another frame) frees the buffers zlib has moved on from now, instead of at a later GC.
 */
/** A compressor's output buffer: a frame (~240 KiB on average, at most a little over FRAME_BYTES) spans one to five. */
const OUTPUT_CHUNK_BYTES = 256 * 1024;

class FrameCompressor {
  readonly #z: ZstdCompress;
  #error: Error | undefined;
  constructor(params: Record<number, number>) {
    this.#z = createZstdCompress({ params, chunkSize: OUTPUT_CHUNK_BYTES, flush: constants.ZSTD_e_end });
    this.#z.on("error", (e: Error) => (this.#error ??= e));
  }

  frame(block: Buffer): Promise<Buffer[]> {
    return new Promise((resolve, reject) => {
      if (this.#error) return reject(this.#error);
      const chunks: Buffer[] = [];
      const onData = (c: Buffer) => chunks.push(c);
      const onError = (e: Error) => {
        this.#z.off("data", onData);
        reject(e);
      };
      this.#z.on("data", onData);
      this.#z.once("error", onError);
      this.#z.write(block, (e) => {
        this.#z.off("data", onData);
        this.#z.off("error", onError);
        const error = e ?? this.#error;
        if (error) reject(error);
        else resolve(chunks);
      });
    });
  }

  /** Frees the buffers of `chunks` that zlib no longer writes into (all but its current output buffer). */
  release(chunks: readonly Buffer[]): void {
    const current = (this.#z as unknown as { _outBuffer?: Buffer })._outBuffer?.buffer;
    if (current === undefined) return; // a Node without the field: the GC frees them
    for (const buffer of new Set(chunks.map((c) => c.buffer))) {
      if (buffer === current || !(buffer instanceof ArrayBuffer) || buffer.byteLength < 64 * 1024 || buffer.detached) continue;
      try {
        buffer.transfer(0);
      } catch {
        // not detachable: the GC frees it later
      }
    }
  }

  close(): void {
    this.#z.destroy();
  }
}

/** sha256 and size of a local file, streamed. */
export async function hashFile(path: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash("sha256");
  let size = 0;
  const handle = await open(path, "r");
  // One buffer, reused, on a page (job/aligned.ts).
  const [buffer] = pageAlignedBuffers(1, 1 << 20) as [Buffer];
  try {
    for (let n; (n = (await handle.read(buffer, 0, buffer.length, size)).bytesRead) > 0; size += n) hash.update(buffer.subarray(0, n));
  } finally {
    await handle.close().catch(() => {});
  }
  return { size, sha256: hash.digest("hex") };
}
