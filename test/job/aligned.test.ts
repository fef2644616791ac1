import { afterEach, describe, expect, it } from "vitest";
import { pageAlignedBuffers } from "../../job/aligned.ts";

const WASM_PAGE = 64 * 1024;
// The project's TypeScript libs do not declare WebAssembly (job/aligned.ts); the tests swap it out.
const g = globalThis as { WebAssembly?: unknown };
const wasm = g.WebAssembly;

afterEach(() => {
  g.WebAssembly = wasm;
});

describe("pageAlignedBuffers", () => {
  it("gives views of one WebAssembly memory, each starting on one of its pages, none overlapping", () => {
    const bufs = pageAlignedBuffers(3, 100_000);
    expect(bufs.map((b) => b.length)).toEqual([100_000, 100_000, 100_000]);
    // A WebAssembly memory is mapped on its own pages: a view at a multiple of its 64 KiB page starts on a page.
    expect(bufs.every((b) => b.buffer === bufs[0]!.buffer)).toBe(true);
    expect(bufs[0]!.buffer.constructor.name).toBe("ArrayBuffer");
    expect(bufs.map((b) => b.byteOffset)).toEqual([0, 2 * WASM_PAGE, 4 * WASM_PAGE]);
    expect(() => (bufs[0]!.buffer as ArrayBuffer).transfer(0)).toThrow(); // WebAssembly's own: not detachable
    bufs[0]!.fill(1);
    bufs[1]!.fill(2);
    bufs[2]!.fill(3);
    expect([bufs[0]!.at(-1), bufs[1]![0], bufs[1]!.at(-1), bufs[2]![0]]).toEqual([1, 2, 2, 3]);
  });

  it("falls back to plain buffers of the same sizes where no WebAssembly memory can be had", () => {
    for (const engine of [
      undefined,
      {
        Memory: class {
          constructor() {
            throw new RangeError("out of memory");
          }
        },
      },
    ]) {
      g.WebAssembly = engine;
      const bufs = pageAlignedBuffers(2, 1 << 20);
      expect(bufs.map((b) => b.length)).toEqual([1 << 20, 1 << 20]);
      expect(bufs[0]!.buffer).not.toBe(bufs[1]!.buffer);
    }
  });
});
