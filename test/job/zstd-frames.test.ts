import { createHash, randomFillSync } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants, createZstdCompress, zstdCompressSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONTENT_CHECKSUM } from "../../core/index.ts";
import { downloadObject } from "../../job/restore/download.ts";
import type { BackupStore } from "../../job/store/types.ts";
import { compressFile, FRAME_BYTES } from "../../job/stream.ts";
import { frameAligned, parallelFrameDecoder, ZstdFrameCutter } from "../../job/zstd-frames.ts";
import { chunked, zstdFrames } from "./zstd-walk.ts";

let dir: string;
/** A database-like file of 5 frames and a short sixth, and the stream `compressFile` makes of it (as backups store it). */
let plain: Buffer;
let stream: Buffer;
let ends: number[];
/** The same file as 0.2.0 until now stored it: each frame written, then flushed, so it ends with an empty block. */
let legacy: Buffer;
let legacyEnds: number[];

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "zstd-frames-"));
  plain = Buffer.alloc(5 * FRAME_BYTES + 12_345);
  for (let i = 0; i < plain.length; i += 4096) {
    randomFillSync(plain, i, Math.min(1024, plain.length - i));
    if (i + 1024 < plain.length) plain.write(`page ${i / 4096} ${"row ".repeat(500)}`, i + 1024);
  }
  await writeFile(join(dir, "plain.db"), plain);
  const chunks: Buffer[] = [];
  await compressFile(join(dir, "plain.db"), async (c) => void chunks.push(Buffer.from(c)));
  stream = Buffer.concat(chunks);
  ends = zstdFrames(stream).map((f) => f.end);
  expect(ends).toHaveLength(6);
  const z = createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: 1 }, chunkSize: 256 << 10 });
  const out: Buffer[] = [];
  z.on("data", (c: Buffer) => out.push(c));
  for (let at = 0; at < plain.length; at += FRAME_BYTES) {
    z.write(plain.subarray(at, at + FRAME_BYTES));
    await new Promise<void>((resolve) => z.flush(constants.ZSTD_e_end, () => resolve()));
  }
  z.destroy();
  legacy = Buffer.concat(out);
  const frames = zstdFrames(legacy);
  legacyEnds = frames.map((f) => f.end);
  expect(frames.map((f) => f.emptyLastBlock)).toEqual([true, true, true, true, true, false]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Feeds `chunks` through one cutter; returns where its pieces end and checks they rejoin to the input. */
function pieceEnds(chunks: Buffer[]): number[] {
  const cutter = new ZstdFrameCutter();
  const out: number[] = [];
  let at = 0;
  const pieces: Uint8Array[] = [];
  for (const chunk of chunks) {
    for (const piece of cutter.cut(chunk)) {
      pieces.push(piece);
      at += piece.length;
      out.push(at);
    }
  }
  expect(Buffer.concat(pieces).equals(Buffer.concat(chunks))).toBe(true);
  return out;
}

/** A store that serves one object, its body cut at `cuts`. */
function storeServing(key: string, bytes: Buffer, cuts: Iterable<number>): BackupStore {
  return {
    get: async (k: string) => {
      if (k !== key) return undefined;
      const chunks = chunked(bytes, cuts);
      return {
        key,
        size: bytes.length,
        etag: "e",
        uploaded: new Date(),
        body: new ReadableStream<Uint8Array>({
          pull(controller) {
            const next = chunks.shift();
            if (next) controller.enqueue(new Uint8Array(next));
            else controller.close();
          },
        }),
      };
    },
  } as unknown as BackupStore;
}

describe("ZstdFrameCutter", () => {
  /** One frame of each kind: with a content checksum (not single segment), skippable, and single segment without. */
  const frameKinds = () => ({
    checked: zstdCompressSync(plain.subarray(0, 70_000), { params: { [constants.ZSTD_c_checksumFlag]: 1 } }),
    skippable: Buffer.concat([Buffer.from([0x5a, 0x2a, 0x4d, 0x18]), Buffer.from([5, 0, 0, 0]), Buffer.from("hello")]),
    unchecked: zstdCompressSync(Buffer.from("tiny")),
  });

  it("ends a piece at every frame end, whatever the chunks: single bytes, random sizes, one whole buffer", () => {
    const everyByte = Array.from({ length: stream.length }, (_, i) => i);
    let seed = 7;
    const random: number[] = [];
    for (let at = 0; at < stream.length; at += 1 + ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % 9000)) random.push(at);
    for (const cuts of [everyByte, random, []]) {
      const got = pieceEnds(chunked(stream, cuts));
      for (const end of ends) expect(got).toContain(end);
    }
    // Around each frame end: a chunk that stops 1, 2, 3 (inside a legacy frame's empty last block) or more bytes short.
    for (const [bytes, frameEnds] of [
      [stream, ends],
      [legacy, legacyEnds],
    ] as const) {
      for (let k = -20; k <= 20; k++) {
        const got = pieceEnds(
          chunked(
            bytes,
            frameEnds.map((e) => e - k),
          ),
        );
        for (const end of frameEnds) expect(got).toContain(end);
      }
    }
  });

  it("follows checksummed and single-segment frames and skippable frames", () => {
    const { checked, skippable, unchecked } = frameKinds();
    const mixed = Buffer.concat([checked, skippable, unchecked]);
    const frames = zstdFrames(mixed);
    expect(frames.map((f) => f.checksum)).toEqual([true, false, false]);
    expect(frames[2]!.windowLog).toBeNull(); // a one-shot compression of a known size: single segment
    const got = pieceEnds(
      chunked(
        mixed,
        Array.from({ length: mixed.length }, (_, i) => i),
      ),
    );
    expect(got.filter((e) => frames.some((f) => f.end === e))).toEqual(frames.map((f) => f.end));
  });

  it("counts data frames and names the first without a content checksum; frameAligned then refuses the stream", async () => {
    const { checked, skippable, unchecked } = frameKinds();
    const cutter = new ZstdFrameCutter();
    for (const chunk of chunked(Buffer.concat([checked, skippable, checked, unchecked, checked]), [7, 70, checked.length + 3])) cutter.cut(chunk);
    expect([cutter.frames, cutter.firstUnchecked]).toEqual([4, 3]);
    const through = async (bytes: Buffer, requireChecksums: boolean) => {
      const out: Buffer[] = [];
      await pipeline(Readable.from(chunked(bytes, [5])), frameAligned({ requireChecksums }), async (chunks: AsyncIterable<Buffer>) => {
        for await (const c of chunks) out.push(c);
      });
      return Buffer.concat(out);
    };
    expect((await through(stream, true)).equals(stream)).toBe(true);
    const mixed = Buffer.concat([checked, unchecked]);
    expect((await through(mixed, false)).equals(mixed)).toBe(true);
    await expect(through(mixed, true)).rejects.toThrow("zstd frame 2 carries no content checksum, and the manifest says every frame does");
  });

  it("passes what is not a zstd frame through whole, for the decoder to name", () => {
    const garbage = Buffer.concat([stream.subarray(0, ends[0]!), Buffer.from("not a frame at all, then more bytes")]);
    const got = pieceEnds(chunked(garbage, [10, ends[0]! + 3, ends[0]! + 20]));
    expect(got).toEqual([10, ends[0]!, ends[0]! + 3, ends[0]! + 20, garbage.length]);
  });
});

describe("a restore's download over a network that cuts anywhere", () => {
  it("decodes backups whose chunks stop 1 to 4 bytes before a frame ends (in 0.2.0's empty last block, or in a frame's checksum now: Node's decoder alone fails there)", async () => {
    const key = "backups/full/20260101T000000Z/app.db.zst";
    for (const [name, bytes, frameEnds] of [
      ["legacy", legacy, legacyEnds],
      ["current", stream, ends],
    ] as const) {
      const checks = name === "legacy" ? { uncompressedSha256: sha256(plain) } : { contentChecksum: CONTENT_CHECKSUM };
      const expected = { size: bytes.length, sha256: sha256(bytes), compression: "zstd" as const, uncompressedSize: plain.length, ...checks };
      for (const k of [1, 2, 3, 4, 0, -1]) {
        const out = join(dir, `restored-${name}-${k}.db`);
        const result = await downloadObject(
          storeServing(
            key,
            bytes,
            frameEnds.map((e) => e - k),
          ),
          key,
          expected,
          out,
        );
        expect(result.uncompressedBytes).toBe(plain.length);
        expect((await readFile(out)).equals(plain)).toBe(true);
      }
    }
  });
});

describe("parallelFrameDecoder (a database's frames decoded several at once)", () => {
  const decode = async (chunks: Buffer[], options: { maxFrameBytes?: number; inFlight?: number } = {}) => {
    const out: Buffer[] = [];
    await pipeline(
      Readable.from(chunks),
      parallelFrameDecoder({ maxFrameBytes: options.maxFrameBytes ?? FRAME_BYTES, inFlight: options.inFlight ?? 3, requireChecksums: true }),
      async function collect(source: AsyncIterable<Buffer>) {
        for await (const c of source) out.push(c);
      },
    );
    return Buffer.concat(out);
  };

  it("gives back the file in order, whatever the chunks: around every frame end, single bytes, random sizes, one buffer", async () => {
    const cutsAround = (k: number) => ends.map((e) => e - k);
    for (const k of [1, 2, 3, 4, 0, -1]) expect((await decode(chunked(stream, cutsAround(k)))).equals(plain), `cut ${k} before each frame end`).toBe(true);
    const random = [] as number[];
    for (let at = 0; at < stream.length; at += 1 + Math.floor(Math.random() * 300_000)) random.push(at);
    expect((await decode(chunked(stream, random))).equals(plain)).toBe(true);
    expect((await decode([stream], { inFlight: 1 })).equals(plain)).toBe(true);
    const firstFrameByteByByte = Array.from({ length: ends[0]! }, (_, i) => i + 1);
    expect((await decode(chunked(stream, firstFrameByteByByte))).equals(plain)).toBe(true);
  });

  it("names the frame whose content does not match its checksum", async () => {
    const bad = Buffer.from(stream);
    bad[ends[2]! - 1]! ^= 1; // the last byte of frame 3's checksum
    await expect(decode([bad])).rejects.toThrow(/zstd frame 3: Restored data doesn't match checksum/);
  });

  it("keeps its memory bounded: a frame that decodes past the limit, bytes that are no frame, a stream cut inside a frame", async () => {
    const big = zstdCompressSync(Buffer.alloc(3 * FRAME_BYTES, 7), { params: { [constants.ZSTD_c_checksumFlag]: 1 } });
    await expect(decode([big])).rejects.toThrow(/zstd frame 1: Cannot create a Buffer larger than/);
    const garbage = Buffer.alloc(8 * FRAME_BYTES);
    randomFillSync(garbage);
    garbage.writeUInt32LE(0x12345678, 0); // no frame's magic: the cutter passes the rest whole, and it is not all held
    const cuts = Array.from({ length: 128 }, (_, i) => (i + 1) * 65536);
    await expect(decode(chunked(garbage, cuts))).rejects.toThrow(/zstd frame 1 is over 1114112 bytes compressed: not a frame of at most 1048576 bytes/);
    await expect(decode([stream.subarray(0, ends[4]! + 100)])).rejects.toThrow(/the zstd stream ends inside frame 6/);
  });

  it("restores through downloadObject with databaseFrames, from a network that cuts anywhere", async () => {
    const key = "backups/full/20260101T000000Z/app.db.zst";
    const expected = { size: stream.length, sha256: sha256(stream), compression: "zstd" as const, uncompressedSize: plain.length, contentChecksum: CONTENT_CHECKSUM };
    for (const k of [1, 4, 0]) {
      const out = join(dir, `restored-parallel-${k}.db`);
      const result = await downloadObject(
        storeServing(
          key,
          stream,
          ends.map((e) => e - k),
        ),
        key,
        expected,
        out,
        { databaseFrames: true },
      );
      expect(result.uncompressedBytes).toBe(plain.length);
      expect((await readFile(out)).equals(plain)).toBe(true);
    }
  });
});
