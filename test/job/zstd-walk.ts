import { expect } from "vitest";

/**
 * The frames of a zstd stream, walked by their headers and block sizes over the whole buffer (RFC 8878, 3.1.1):
 * where each ends, its window (log2; null for a single-segment frame, whose window is its content), the content
 * size its header records (null: none), whether its last block is an empty one, and whether it ends in a
 * content checksum.
 * Skippable frames count as frames with no window. For tests: job/zstd-frames.ts cuts streams as they arrive.
 */
export interface WalkedFrame {
  end: number;
  windowLog: number | null;
  contentSize: number | null;
  emptyLastBlock: boolean;
  checksum: boolean;
}

export function zstdFrames(stream: Uint8Array): WalkedFrame[] {
  const s = Buffer.from(stream.buffer, stream.byteOffset, stream.byteLength);
  const frames: WalkedFrame[] = [];
  for (let at = 0; at < s.length; ) {
    const magic = s.readUInt32LE(at);
    if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) {
      at += 8 + s.readUInt32LE(at + 4);
      frames.push({ end: at, windowLog: null, contentSize: null, emptyLastBlock: false, checksum: false });
      continue;
    }
    expect(magic).toBe(0xfd2fb528);
    const fhd = s[at + 4]!;
    const single = (fhd & 0x20) !== 0;
    const checksum = (fhd & 0x04) !== 0;
    const windowLog = single ? null : 10 + (s[at + 5]! >> 3);
    const fcsBytes = [single ? 1 : 0, 2, 4, 8][fhd >> 6]!;
    const fcsAt = at + 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]!;
    const contentSize = fcsBytes === 0 ? null : fcsBytes === 8 ? Number(s.readBigUInt64LE(fcsAt)) : s.readUIntLE(fcsAt, fcsBytes) + (fcsBytes === 2 ? 256 : 0);
    at = fcsAt + fcsBytes;
    let emptyLastBlock = false;
    for (let last = false; !last; ) {
      const header = s.readUIntLE(at, 3);
      last = (header & 1) === 1;
      emptyLastBlock = last && header >>> 3 === 0 && ((header >> 1) & 3) === 0;
      at += 3 + (((header >> 1) & 3) === 1 ? 1 : header >>> 3);
    }
    if (checksum) at += 4;
    frames.push({ end: at, windowLog, contentSize, emptyLastBlock, checksum });
  }
  return frames;
}

/** `bytes` cut at `cuts` (offsets, any order), as a network might deliver them. */
export function chunked(bytes: Buffer, cuts: Iterable<number>): Buffer[] {
  const at = [...new Set([...cuts].filter((c) => c > 0 && c < bytes.length))].sort((a, b) => a - b);
  return [0, ...at].map((from, i) => bytes.subarray(from, at[i] ?? bytes.length));
}
