import { describe, expect, it } from "vitest";
import { MAX_CLOCK_SKEW_MS, futureKeyReason, isFutureDay, isFutureTimestamp } from "../../core/index.ts";

/** The one-clock rule (issue 13): a write whose set id is later than the Worker's clock allows is refused. */
const NOW = new Date("2026-03-01T12:00:00.000Z");

describe("futureKeyReason: which keys are from the future", () => {
  it("documents the skew as 5 minutes", () => {
    expect(MAX_CLOCK_SKEW_MS).toBe(5 * 60 * 1000);
  });

  const table: [key: string, refused: boolean][] = [
    // full/ and incremental/: the <ts> segment, any file name (a stray object is still refused)
    ["backups/full/20260301T120000Z/metadata.json", false],
    ["backups/full/20260301T120100Z/app.db.zst", false],
    ["backups/full/20260301T120500Z/metadata.json", false],
    ["backups/full/20260301T120501Z/metadata.json", true],
    ["backups/full/20260301T130000Z/metadata.json", true],
    ["backups/full/99991231T235959Z/metadata.json", true],
    ["backups/full/99991231T235959Z/anything.bin", true],
    ["backups/full/20250101T000000Z/metadata.json", false],
    ["backups/incremental/20260301T120400Z/changes.ndjson.zst", false],
    ["backups/incremental/20260301T121000Z/changes.ndjson.zst", true],
    ["backups/incremental/99991231T235959Z/stray", true],
    // drills/: the timestamp that starts the file name, passed or failed
    ["backups/drills/20260301T115959Z.json", false],
    ["backups/drills/20260301T121000Z.json", true],
    ["backups/drills/20260301T121000Z.failed.json", true],
    // daily/: today (and the day of now + skew) is fine, any later day is not
    ["backups/daily/2026-03-01/metadata.json", false],
    ["backups/daily/2026-02-28/metadata.json", false],
    ["backups/daily/2026-03-02/metadata.json", true],
    ["backups/daily/9999-12-31/app.db.zst", true],
    // no date: state/, and ids that are not times (the Worker's key rule passes them; nothing orders them)
    ["backups/state/latest", false],
    ["backups/state/99991231T235959Z", false],
    ["backups/full/not-a-time/metadata.json", false],
    ["backups/full/20261399T000000Z/metadata.json", false],
  ];
  it.each(table)("%s refused: %s", (key, refused) => {
    const reason = futureKeyReason(key, NOW, MAX_CLOCK_SKEW_MS);
    expect(reason !== undefined).toBe(refused);
    if (refused) expect(reason).toMatch(/after the Worker's/);
  });

  it("says by how much the id is ahead and what the Worker's clock read", () => {
    expect(futureKeyReason("backups/full/20260301T130000Z/metadata.json", NOW, MAX_CLOCK_SKEW_MS)).toBe(
      "the set id 20260301T130000Z is 1 hours after the Worker's clock (2026-03-01T12:00:00.000Z; at most 5 minutes of skew are allowed)",
    );
  });

  it("the day of now + skew counts as today near midnight", () => {
    const late = new Date("2026-03-01T23:57:00Z");
    expect(isFutureDay("2026-03-02", late, MAX_CLOCK_SKEW_MS)).toBe(false);
    expect(isFutureDay("2026-03-02", late, 0)).toBe(true);
    expect(isFutureDay("2026-03-03", late, MAX_CLOCK_SKEW_MS)).toBe(true);
  });

  it("a timestamp exactly at now + skew is not future, one second later is", () => {
    expect(isFutureTimestamp("20260301T120500Z", NOW, MAX_CLOCK_SKEW_MS)).toBe(false);
    expect(isFutureTimestamp("20260301T120501Z", NOW, MAX_CLOCK_SKEW_MS)).toBe(true);
  });
});
