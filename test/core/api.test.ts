import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { MAX_PARTS, MAX_PART_BYTES, MIN_PART_BYTES, catalogFromKeys, choosePartSize, checkWorkerUrl, keyFromPath, objectPath, summarizeStatus } from "../../core/index.ts";

describe("API paths", () => {
  it("encode each key segment and decode back (property)", () => {
    const segment = fc.string({ minLength: 1, maxLength: 12 }).filter((s) => s !== "." && s !== ".." && !s.includes("/") && !/[\u0000-\u001f\u007f\\]/.test(s));
    fc.assert(
      fc.property(fc.constantFrom("full", "incremental", "daily", "drills", "state"), fc.array(segment, { minLength: 1, maxLength: 3 }), (area, rest) => {
        const key = `backups/${area}/${rest.join("/")}`;
        fc.pre(new TextEncoder().encode(key).length <= 512);
        expect(keyFromPath(new URL(objectPath(key), "http://x").pathname)).toBe(key);
      }),
    );
  });

  it("reject a path that decodes to a key outside the layout", () => {
    expect(() => keyFromPath("/api/backups/backups/full/%2e%2e/state/x")).toThrow(/has a '\.' or '\.\.' segment/);
    expect(() => keyFromPath("/api/backups/backups%2Ffull%2F%E0%A4%A")).toThrow(/is not valid percent-encoding/);
    expect(keyFromPath("/api/status")).toBeUndefined();
  });
});

describe("choosePartSize", () => {
  it("keeps parts within R2's limits for any size up to the maximum (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_PARTS * MAX_PART_BYTES - MAX_PARTS * 1024 * 1024 }), (size) => {
        const part = choosePartSize(size);
        expect(part).toBeGreaterThanOrEqual(MIN_PART_BYTES);
        expect(part).toBeLessThanOrEqual(MAX_PART_BYTES);
        expect(Math.ceil(size / part)).toBeLessThanOrEqual(MAX_PARTS);
      }),
    );
  });

  it("refuses an object too large for a Worker, saying the limit", () => {
    expect(() => choosePartSize(2e12)).toThrow(/over the 99614720-byte request limit of a Worker/);
    expect(() => choosePartSize(-1)).toThrow("plan multipart upload of '-1': expected a non-negative whole number of bytes");
    expect(() => choosePartSize(10, 1024)).toThrow(/plan part size '1024'/);
  });
});

describe("catalog and status", () => {
  const keys = [
    "backups/full/20260101T000000Z/app.db.zst",
    "backups/full/20260101T000000Z/metadata.json",
    "backups/full/20260101T060000Z/app.db.zst",
    "backups/incremental/20260101T010000Z/changes.ndjson.zst",
    "backups/incremental/20260101T010000Z/metadata.json",
    "backups/daily/2026-01-01/metadata.json",
    "backups/drills/20260101T020000Z.json",
    "backups/state/latest.json",
    "backups/full/junk",
  ];

  it("groups keys into sets and marks those with a manifest complete", () => {
    const c = catalogFromKeys(keys);
    expect(c.full.map((s) => [s.id, s.complete])).toEqual([
      ["20260101T000000Z", true],
      ["20260101T060000Z", false],
    ]);
    expect(c.incremental[0]?.files).toEqual(["changes.ndjson.zst", "metadata.json"]);
    expect(c.drills).toEqual(["20260101T020000Z"]);
    expect(c.unknown).toEqual(["backups/full/junk"]);
  });

  it("is healthy only while the newest complete full is younger than the limit", () => {
    const c = catalogFromKeys(keys);
    const fresh = summarizeStatus(c, new Date("2026-01-01T06:30:00Z"), 7);
    expect(fresh.healthy).toBe(true);
    expect(fresh.full).toEqual({ id: "20260101T000000Z", at: "2026-01-01T00:00:00.000Z", ageHours: 6.5 });
    const stale = summarizeStatus(c, new Date("2026-01-01T07:30:00Z"), 7);
    expect(stale.healthy).toBe(false);
    expect(stale.problems).toEqual(["the newest complete full backup 20260101T000000Z is 7.5 hours old (limit 7)"]);
    expect(summarizeStatus(catalogFromKeys([]), new Date(), 7).problems).toEqual(["no complete full backup"]);
  });
});

describe("restore drills in the listing", () => {
  it("tell a failed drill from a passed one by key, and warn when the newest drill failed", () => {
    const keys = ["backups/full/20260101T000000Z/metadata.json", "backups/drills/20260101T010000Z.json", "backups/drills/20260101T020000Z.failed.json"];
    const c = catalogFromKeys(keys);
    expect(c.drills).toEqual(["20260101T010000Z"]);
    expect(c.failedDrills).toEqual(["20260101T020000Z"]);
    const s = summarizeStatus(c, new Date("2026-01-01T03:00:00Z"), 7);
    expect(s.drill?.id).toBe("20260101T010000Z");
    expect(s.healthy).toBe(true);
    expect(s.warnings).toEqual(["the last restore drill 20260101T020000Z failed; the last good one is 20260101T010000Z"]);
    const later = summarizeStatus(catalogFromKeys([...keys, "backups/drills/20260101T030000Z.json"]), new Date("2026-01-01T03:00:00Z"), 7);
    expect(later.warnings).toEqual([]);
  });
});

describe("checkWorkerUrl: the Worker's origin from what an operator gave", () => {
  it.each([
    ["https://backups.example.com", { origin: "https://backups.example.com" }],
    ["https://backups.example.com/", { origin: "https://backups.example.com" }],
    ["http://127.0.0.1:8787", { origin: "http://127.0.0.1:8787" }],
    ["backups.example.com", { reason: "not a URL", shown: "backups.example.com" }],
    ["ftp://backups.example.com", { reason: "the scheme is 'ftp:' (not http or https)" }],
    ["admin:s3cret@backups.example.com", { reason: "the scheme is 'admin:' (not http or https)", shown: "admin:..." }],
    ["https://u:s3cret@backups.example.com", { reason: "the URL carries credentials (user:password@)", shown: "https://backups.example.com/" }],
    ["https://backups.example.com/api", { reason: "the URL ends with the API path", hint: "drop '/api': X=https://backups.example.com" }],
    ["https://backups.example.com/prefix", { reason: "the URL has a path, query or fragment after the host", hint: "X is the Worker's origin: X=https://backups.example.com" }],
    ["https://backups.example.com/?sig=s3cret", { reason: "the URL has a path, query or fragment after the host", shown: "https://backups.example.com/?..." }],
    ["https://backups.example.com/api?sig=s3cret", { reason: "the URL has a path, query or fragment after the host", shown: "https://backups.example.com/api?..." }],
  ] as const)("%s", (raw, expected) => {
    const checked = checkWorkerUrl(raw, "X");
    expect(checked).toMatchObject(expected);
    expect(JSON.stringify(checked)).not.toContain("s3cret");
  });
});
