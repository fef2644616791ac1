import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { catalogFromKeys, formatDay, formatTimestamp, summarizeStatus, type ApiStatus } from "../../core/index.ts";

/** Status never lies about age (issue 13): a set from the future is a problem, never the freshest. */
const NOW = new Date("2026-03-01T12:00:00.000Z");
const HOUR = 3_600_000;
const ts = (hoursAgo: number) => formatTimestamp(new Date(NOW.getTime() - hoursAgo * HOUR));
const full = (id: string, complete = true) => [`backups/full/${id}/app.db.zst`, ...(complete ? [`backups/full/${id}/metadata.json`] : [])];
const status = (keys: string[]) => summarizeStatus(catalogFromKeys(keys), NOW, 7);
const ages = (s: ApiStatus) => [s.full, s.incremental, s.daily, s.drill].flatMap((e) => (e ? [e.ageHours] : []));

describe("summarizeStatus and the clock", () => {
  it("a fresh chain is healthy, as before", () => {
    const s = status([...full(ts(1)), `backups/incremental/${ts(0.5)}/metadata.json`, `backups/daily/${formatDay(NOW)}/metadata.json`, `backups/drills/${ts(2)}.json`]);
    expect(s).toMatchObject({ healthy: true, problems: [], full: { id: ts(1), ageHours: 1 }, incremental: { ageHours: 0.5 }, drill: { ageHours: 2 } });
  });

  it("a stray future full cannot make an old chain look fresh: the old full is judged, the stray is named", () => {
    const s = status([...full(ts(10)), ...full("99991231T235959Z")]);
    expect(s.healthy).toBe(false);
    expect(s.full).toMatchObject({ id: ts(10), ageHours: 10 });
    expect(s.problems).toContainEqual(expect.stringContaining(`the newest complete full backup ${ts(10)} is 10 hours old`));
    expect(s.problems).toContainEqual(
      expect.stringMatching(/^the newest full backup 99991231T235959Z is dated 9999-12-31T23:59:59\.000Z, \d+(\.\d+)? hours in the future: a clock ahead or a stray object/),
    );
  });

  it("a full 30 days ahead (a clock ahead) is a problem even next to a fresh one, and no age is negative", () => {
    const ahead = ts(-30 * 24);
    const s = status([...full(ts(1)), ...full(ahead)]);
    expect(s.healthy).toBe(false);
    expect(s.full?.id).toBe(ts(1));
    expect(s.problems).toEqual([
      expect.stringContaining(`the newest full backup ${ahead} is dated ${new Date(NOW.getTime() + 30 * 24 * HOUR).toISOString()}, 720 hours in the future`),
    ]);
    expect(ages(s).every((a) => a >= 0)).toBe(true);
  });

  it("only future fulls: no full entry, and the problem says the complete ones are all in the future", () => {
    const s = status(full(ts(-2)));
    expect(s.full).toBeNull();
    expect(s.problems).toContain("no complete full backup that is not dated in the future");
    expect(s.problems).toContainEqual(expect.stringContaining(`the newest full backup ${ts(-2)} is dated`));
  });

  it("within the skew (1 minute ahead) is fresh, with age 0, not a problem", () => {
    const s = status(full(ts(-1 / 60)));
    expect(s).toMatchObject({ healthy: true, problems: [], full: { id: ts(-1 / 60), ageHours: 0 } });
  });

  it("a stray future incremental (even incomplete), daily or drill is a problem; the entries stay the newest real ones", () => {
    const tomorrow = formatDay(new Date(NOW.getTime() + 24 * HOUR));
    const s = status([
      ...full(ts(1)),
      `backups/incremental/${ts(0.5)}/metadata.json`,
      "backups/incremental/99991231T235959Z/changes.ndjson.zst",
      `backups/daily/${formatDay(NOW)}/metadata.json`,
      `backups/daily/${tomorrow}/metadata.json`,
      `backups/drills/${ts(3)}.json`,
      `backups/drills/${ts(-5)}.json`,
      `backups/drills/${ts(-6)}.failed.json`,
    ]);
    expect(s.healthy).toBe(false);
    expect(s.incremental?.id).toBe(ts(0.5));
    expect(s.daily?.id).toBe(formatDay(NOW));
    expect(s.drill?.id).toBe(ts(3));
    expect(s.warnings).toEqual([]);
    for (const named of ["incremental backup 99991231T235959Z", `daily backup ${tomorrow}`, `restore drill ${ts(-5)}`, `failed restore drill ${ts(-6)}`]) {
      expect(s.problems).toContainEqual(expect.stringContaining(`the newest ${named} is dated`));
    }
  });

  it("several future sets of a kind are one problem that counts them", () => {
    const s = status([...full(ts(1)), ...full(ts(-10)), ...full(ts(-20), false)]);
    expect(s.problems).toEqual([expect.stringContaining(`the newest full backup ${ts(-20)} is dated`)]);
    expect(s.problems[0]).toContain("(2 full backups are in the future)");
  });

  it("no age is ever negative, and the full entry is never after now + skew (property)", () => {
    const hours = fc.double({ min: -24 * 400, max: 24 * 400, noNaN: true });
    fc.assert(
      fc.property(fc.array(hours, { maxLength: 6 }), fc.array(hours, { maxLength: 4 }), fc.array(hours, { maxLength: 3 }), (fulls, drills, dailies) => {
        const s = status([
          ...fulls.flatMap((h) => full(ts(h))),
          ...drills.map((h) => `backups/drills/${ts(h)}.json`),
          ...dailies.map((h) => `backups/daily/${formatDay(new Date(NOW.getTime() - h * HOUR))}/metadata.json`),
        ]);
        expect(ages(s).every((a) => a >= 0)).toBe(true);
        if (s.full) expect(Date.parse(s.full.at)).toBeLessThanOrEqual(NOW.getTime() + 5 * 60_000);
        if (fulls.some((h) => h < -5 / 60)) expect(s.healthy).toBe(false);
      }),
    );
  });
});
