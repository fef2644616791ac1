import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { dayOfTimestamp, formatDay, formatTimestamp, isIsoTime, parseDay, parsePointInTime, parseTimestamp } from "../../core/index.ts";

const times = fc.date({ min: new Date("1970-01-01T00:00:00Z"), max: new Date("9999-12-31T23:59:59Z"), noInvalidDate: true });

describe("backup timestamps", () => {
  it("format as UTC YYYYMMDDTHHMMSSZ", () => {
    expect(formatTimestamp(new Date("2026-01-31T06:07:08.999Z"))).toBe("20260131T060708Z");
  });

  it("round-trip to the second", () => {
    fc.assert(
      fc.property(times, (t) => {
        const ts = formatTimestamp(t);
        expect(parseTimestamp(ts).getTime()).toBe(Math.floor(t.getTime() / 1000) * 1000);
        expect(formatTimestamp(parseTimestamp(ts))).toBe(ts);
      }),
    );
  });

  it("sort as strings in time order", () => {
    fc.assert(
      fc.property(times, times, (a, b) => {
        const [ta, tb] = [formatTimestamp(a), formatTimestamp(b)];
        const sa = Math.floor(a.getTime() / 1000);
        const sb = Math.floor(b.getTime() / 1000);
        expect(ta < tb).toBe(sa < sb);
        expect(ta === tb).toBe(sa === sb);
      }),
    );
  });

  it.each([
    ["20260131T060708", "expected UTC YYYYMMDDTHHMMSSZ"],
    ["2026-01-31T06:07:08Z", "expected UTC YYYYMMDDTHHMMSSZ"],
    ["20260231T060708Z", "not a real calendar time"],
    ["20260131T250000Z", "not a real calendar time"],
    ["", "expected UTC"],
  ])("reject %j with a reason", (bad, reason) => {
    expect(() => parseTimestamp(bad)).toThrow(`parse timestamp '${bad}': ${reason}`);
  });

  it("reject an invalid Date naming it", () => {
    expect(() => formatTimestamp(new Date("nope"))).toThrow("format time 'Invalid Date': expected a valid Date");
  });
});

describe("days", () => {
  it("round-trip and match the timestamp's day", () => {
    fc.assert(
      fc.property(times, (t) => {
        const day = formatDay(t);
        expect(formatDay(parseDay(day))).toBe(day);
        expect(dayOfTimestamp(formatTimestamp(t))).toBe(day);
      }),
    );
  });

  it("reject a day that does not exist", () => {
    expect(() => parseDay("2026-02-30")).toThrow("parse day '2026-02-30': not a real calendar day");
  });
});

describe("ISO times (manifests' and the chain's createdAt, capturedAt, ...)", () => {
  it("accept what Date.toISOString() writes (property)", () => {
    fc.assert(fc.property(times, (t) => isIsoTime(t.toISOString())));
  });

  it.each([
    ["2026-01-31T06:00:00Z", true],
    ["2026-01-31T06:00:00.123456789Z", true],
    ["2028-02-29T23:59:59.999Z", true],
    ["2000-02-29T00:00:00.000Z", true],
    ["2026-02-29T00:00:00.000Z", false],
    ["1900-02-29T00:00:00.000Z", false],
    ["2026-04-31T00:00:00.000Z", false],
    ["2026-13-01T00:00:00.000Z", false],
    ["2026-00-01T00:00:00.000Z", false],
    ["2026-01-00T00:00:00.000Z", false],
    ["2026-01-31T24:00:00.000Z", false],
    ["2026-01-31T06:60:00.000Z", false],
    ["2026-01-31T06:00:60.000Z", false],
    ["2026-01-31T06:00Z", false],
    ["2026-01-31T06:00:00.Z", false],
    ["2026-01-31T06:00:00+01:00", false],
    ["2026-01-31T06:00:00", false],
    ["20260131T060000Z", false],
    [1769839200000, false],
  ])("%j: %s", (value, ok) => {
    expect(isIsoTime(value)).toBe(ok);
  });
});

describe("points in time", () => {
  it("accept latest, timestamps and zoned ISO times", () => {
    expect(parsePointInTime("latest")).toBe("latest");
    expect(parsePointInTime("20260131T060000Z")).toEqual(new Date("2026-01-31T06:00:00Z"));
    expect(parsePointInTime("2026-01-31T08:00:00+02:00")).toEqual(new Date("2026-01-31T06:00:00Z"));
  });

  it("reject a time without a zone, naming the value and the accepted forms", () => {
    expect(() => parsePointInTime("2026-01-31 06:00")).toThrow(/parse point in time '2026-01-31 06:00': expected 'latest'/);
  });
});
