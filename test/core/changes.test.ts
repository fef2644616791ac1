import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { compareKeys, decodeChangeLine, encodeChangeLine, isPastWatermark, type Row } from "../../core/index.ts";

const sqlValue = fc.oneof(
  fc.constant(null),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Object.is(n, -0)),
  fc.integer(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).filter((b) => !Number.isSafeInteger(Number(b))),
  fc.string(),
  fc.uint8Array({ maxLength: 64 }),
);

describe("the change line format", () => {
  it("round-trips every SQLite value exactly (property)", () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.string({ minLength: 1, maxLength: 8 }).filter((k) => k !== "__proto__"),
          sqlValue,
        ),
        (row) => {
          const line = encodeChangeLine({ source: "eventlog@6", table: "eventlog", row: row as Row });
          expect(line).not.toContain("\n");
          expect(decodeChangeLine(line)).toEqual({ source: "eventlog@6", table: "eventlog", row });
        },
      ),
    );
  });

  it("rejects a malformed line, naming where it is", () => {
    expect(() => decodeChangeLine("{", "changes.ndjson.zst:3")).toThrow(/decode change line 'changes.ndjson.zst:3': not JSON/);
    expect(() => decodeChangeLine('{"s":"a","t":"b"}', "x:1")).toThrow(/expected \{"s": source/);
    expect(() => decodeChangeLine('{"s":"a","t":"b","r":{"c":{"x":1}}}', "x:2")).toThrow(/decode change value 'x:2 column c': unsupported value/);
  });
});

describe("watermarks", () => {
  it("order key tuples lexicographically, numbers before text", () => {
    expect(compareKeys([1, 0], [1, 1])).toBe(-1);
    expect(compareKeys([2, 0], [1, 9])).toBe(1);
    expect(compareKeys([1n, 0], [1, 0])).toBe(0);
    expect(compareKeys([5], ["a"])).toBe(-1);
  });

  it("pass rows strictly after the watermark, and every row after a null one", () => {
    const wm = { columns: ["seqNumGlobal", "seqNumClient"], value: [3, 0] };
    expect(isPastWatermark({ seqNumGlobal: 3, seqNumClient: 0 }, wm)).toBe(false);
    expect(isPastWatermark({ seqNumGlobal: 3, seqNumClient: 1 }, wm)).toBe(true);
    expect(isPastWatermark({ seqNumGlobal: 4, seqNumClient: 0 }, wm)).toBe(true);
    expect(isPastWatermark({ seqNumGlobal: 0, seqNumClient: 0 }, { ...wm, value: null })).toBe(true);
    expect(() => isPastWatermark({ seqNumGlobal: null, seqNumClient: 0 }, wm)).toThrow(/compare row key 'seqNumGlobal'/);
  });
});
