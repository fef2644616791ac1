import { createHash, randomFillSync } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createZstdDecompress, zstdCompressSync, type ZstdOptions } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { HashingFileSink } from "../../job/restore/download.ts";

/** The file end of a restore's download (job/restore/download.ts): bytes, hash, and freed buffers. */
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "file-sink-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Bytes that compress about 4:1, like database pages: a random quarter and a repetitive rest. */
function pages(bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4096) {
    randomFillSync(out, i, Math.min(1024, bytes - i));
    out.write(`page ${i / 4096} ${"row ".repeat(500)}`, i + 1024);
  }
  return out;
}

async function feed(input: Buffer, inputChunk: number): Promise<Readable> {
  const compressed = zstdCompressSync(input);
  const parts: Buffer[] = [];
  for (let i = 0; i < compressed.length; i += inputChunk) parts.push(compressed.subarray(i, i + inputChunk));
  return Readable.from(parts);
}

describe("HashingFileSink", () => {
  it("fed by a decompressor, writes the exact bytes and frees each filled output buffer once it is on disk", async () => {
    const input = pages(12 << 20);
    const chunkSize = 256 << 10;
    const decompress = createZstdDecompress({ chunkSize } as ZstdOptions);
    const sink = new HashingFileSink(join(dir, "out.db"), { releaseBuffersOf: decompress });
    // Small input pieces make zlib hand out several slices of one output buffer: only the last frees it.
    await pipeline(await feed(input, 7000), decompress, sink);

    expect((await readFile(join(dir, "out.db"))).equals(input)).toBe(true);
    expect(sink.bytes).toBe(input.length);
    expect(sink.hash!.digest("hex")).toBe(createHash("sha256").update(input).digest("hex"));
    expect(sink.released).toBeGreaterThanOrEqual(Math.floor(input.length / chunkSize) - 1);
  });

  it("frees nothing it was not told to, and nothing of another size than the decompressor's buffers", async () => {
    const input = pages(2 << 20);
    const plainSink = new HashingFileSink(join(dir, "a.db"));
    await pipeline(await feed(input, 65536), createZstdDecompress({ chunkSize: 256 << 10 } as ZstdOptions), plainSink);
    expect(plainSink.released).toBe(0);

    // Chunks of another size than the decompressor's buffers are never its own.
    const chunks = [Buffer.from(input.subarray(0, 1 << 20)), Buffer.from(input.subarray(1 << 20))];
    const idle = createZstdDecompress();
    const notFromIt = new HashingFileSink(join(dir, "b.db"), { hash: false, releaseBuffersOf: idle });
    await pipeline(Readable.from(chunks), notFromIt);
    idle.destroy();
    expect(notFromIt.released).toBe(0);
    expect(notFromIt.hash).toBeUndefined();
    expect(chunks.every((c) => c.byteLength === 1 << 20)).toBe(true); // still readable: not detached
    expect((await readFile(join(dir, "b.db"))).equals(input)).toBe(true);
  });
});
