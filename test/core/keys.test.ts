import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { type BackupKey, dailyKeyFor, formatBackupKey, formatDay, formatTimestamp, isOverwritableKey, manifestKey, parseBackupKey, validateObjectKey } from "../../core/index.ts";

const time = fc.date({ min: new Date("1970-01-01T00:00:00Z"), max: new Date("9999-12-31T23:59:59Z"), noInvalidDate: true });
const ts = time.map(formatTimestamp);
const source = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,20}$/).filter((s) => !s.includes(".."));
const fullFile = fc.oneof(
  fc.constant("metadata.json"),
  fc.constant("documents.tar.zst"),
  source.map((s) => `${s}.db.zst`),
);
const incFile = fc.constantFrom("metadata.json", "changes.ndjson.zst");
const stateName = fc.array(source, { minLength: 1, maxLength: 3 }).map((a) => a.join("/"));

const keys: fc.Arbitrary<BackupKey> = fc.oneof(
  fc.record({ kind: fc.constant("full" as const), ts, file: fullFile }),
  fc.record({ kind: fc.constant("incremental" as const), ts, file: incFile }),
  fc.record({ kind: fc.constant("daily" as const), day: time.map(formatDay), file: fullFile }),
  fc.record({ kind: fc.constant("drill" as const), ts }),
  fc.record({ kind: fc.constant("drill" as const), ts, failed: fc.constant(true as const) }),
  fc.record({ kind: fc.constant("state" as const), name: stateName }),
);

describe("the key layout", () => {
  it("formats every kind as docs/design.md lays it out", () => {
    expect(formatBackupKey({ kind: "full", ts: "20260131T060000Z", file: "eventlog@6.db.zst" })).toBe("backups/full/20260131T060000Z/eventlog@6.db.zst");
    expect(formatBackupKey({ kind: "incremental", ts: "20260131T070000Z", file: "changes.ndjson.zst" })).toBe("backups/incremental/20260131T070000Z/changes.ndjson.zst");
    expect(formatBackupKey({ kind: "daily", day: "2026-01-31", file: "metadata.json" })).toBe("backups/daily/2026-01-31/metadata.json");
    expect(formatBackupKey({ kind: "drill", ts: "20260131T060000Z" })).toBe("backups/drills/20260131T060000Z.json");
    expect(formatBackupKey({ kind: "drill", ts: "20260131T060000Z", failed: true })).toBe("backups/drills/20260131T060000Z.failed.json");
    expect(formatBackupKey({ kind: "state", name: "latest.json" })).toBe("backups/state/latest.json");
    expect(manifestKey("full", "20260131T060000Z")).toBe("backups/full/20260131T060000Z/metadata.json");
    expect(dailyKeyFor("20260131T230000Z", "app.db.zst")).toBe("backups/daily/2026-01-31/app.db.zst");
  });

  it("round-trips every key (property)", () => {
    fc.assert(
      fc.property(keys, (k) => {
        expect(parseBackupKey(formatBackupKey(k))).toEqual(k);
      }),
    );
  });

  it("keeps time order as string order within a kind (property)", () => {
    fc.assert(
      fc.property(time, time, (a, b) => {
        const ka = formatBackupKey({ kind: "full", ts: formatTimestamp(a), file: "metadata.json" });
        const kb = formatBackupKey({ kind: "full", ts: formatTimestamp(b), file: "metadata.json" });
        const da = Math.floor(a.getTime() / 1000);
        const db = Math.floor(b.getTime() / 1000);
        expect(ka < kb).toBe(da < db);
      }),
    );
  });

  it("every formatted key passes the Worker's key rule (property)", () => {
    fc.assert(
      fc.property(keys, (k) => {
        expect(validateObjectKey(formatBackupKey(k))).toBe(formatBackupKey(k));
      }),
    );
  });

  it.each([
    ["backups/full/20260131T060000Z/notes.txt", "the file 'notes.txt' is not one of"],
    ["backups/full/2026-01-31/metadata.json", "'2026-01-31' is not a timestamp"],
    ["backups/incremental/20260131T060000Z/app.db.zst", "the file 'app.db.zst' is not one of"],
    ["backups/daily/20260131T060000Z/metadata.json", "expected UTC YYYY-MM-DD"],
    ["backups/drills/20260131T060000Z", "expected backups/drills/<ts>.json or <ts>.failed.json"],
    ["backups/state/../x", "a state name is one or more"],
    ["backups/other/x", "expected backups/full|incremental|daily|drills|state/"],
    ["other/full/20260131T060000Z/metadata.json", "expected a key under 'backups/'"],
    ["backups/full/20260131T060000Z/a/metadata.json", "expected backups/full/<ts>/<file>"],
  ])("rejects %j naming it and the reason", (key, reason) => {
    expect(() => parseBackupKey(key)).toThrow(`parse backup key '${key}'`);
    expect(() => parseBackupKey(key)).toThrow(reason);
  });

  it("rejects a key over 512 bytes", () => {
    const key = `backups/state/${"a".repeat(600)}`;
    expect(() => parseBackupKey(key)).toThrow(/is 614 bytes, at most 512 are allowed/);
  });

  it("rejects a bad source name with a hint", () => {
    expect(() => formatBackupKey({ kind: "full", ts: "20260131T060000Z", file: "../x.db.zst" })).toThrow(/is not one of/);
  });
});

describe("the Worker's key rule", () => {
  it.each([
    ["backups/full/x/y", true],
    ["backups/state/latest.json", true],
    ["backups/full/../state/x", false],
    ["backups/full//x", false],
    ["backups/full/x/./y", false],
    ["backups/tmp/x", false],
    ["backups/full/x\u0000", false],
    ["backups/full/a\\b", false],
    ["", false],
  ])("%j allowed: %s", (key, ok) => {
    if (ok) expect(validateObjectKey(key)).toBe(key);
    else expect(() => validateObjectKey(key)).toThrow(/validate backup key/);
  });

  it("only state keys are overwritable", () => {
    expect(isOverwritableKey("backups/state/latest.json")).toBe(true);
    expect(isOverwritableKey("backups/full/20260131T060000Z/metadata.json")).toBe(false);
    expect(isOverwritableKey("backups/statex/a")).toBe(false);
  });
});
