import { expect } from "vitest";

/**
 * The frames of a zstd stream, walked by their headers and block sizes over the whole buffer (RFC 8878, 3.1.1):
 * where each ends, its window (log2; null for a single-segment frame) and whether it ends in a content checksum.
 * Skippable frames count as frames with no window. For tests: job/zstd-frames.ts cuts streams as they arrive.
 */
export function zstdFrames(stream: Uint8Array): { end: number; windowLog: number | null; checksum: boolean }[] {
  const s = Buffer.from(stream.buffer, stream.byteOffset, stream.byteLength);
  const frames: { end: number; windowLog: number | null; checksum: boolean }[] = [];
  for (let at = 0; at < s.length; ) {
    const magic = s.readUInt32LE(at);
    if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) {
      at += 8 + s.readUInt32LE(at + 4);
      frames.push({ end: at, windowLog: null, checksum: false });
      continue;
    }
    expect(magic).toBe(0xfd2fb528);
    const fhd = s[at + 4]!;
    const single = (fhd & 0x20) !== 0;
    const checksum = (fhd & 0x04) !== 0;
    const windowLog = single ? null : 10 + (s[at + 5]! >> 3);
    at += 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]! + [single ? 1 : 0, 2, 4, 8][fhd >> 6]!;
    for (let last = false; !last; ) {
      const header = s.readUIntLE(at, 3);
      last = (header & 1) === 1;
      at += 3 + (((header >> 1) & 3) === 1 ? 1 : header >>> 3);
    }
    if (checksum) at += 4;
    frames.push({ end: at, windowLog, checksum });
  }
  return frames;
}
