import { describe, expect, it } from "vitest";
import { DAY_SECONDS, DEFAULT_RETENTION, explainRetention, lifecycleRules, lockRules, validateRetentionPolicy } from "../../core/index.ts";

describe("the retention policy", () => {
  it("derives docs/design.md's lifecycle rules, in seconds, with InfrequentAccess and never GLACIER", () => {
    const rules = lifecycleRules(DEFAULT_RETENTION);
    const byId = Object.fromEntries(rules.map((r) => [r.id, r]));
    expect(byId["expire-full"]).toEqual({
      id: "expire-full",
      enabled: true,
      conditions: { prefix: "backups/full/" },
      deleteObjectsTransition: { condition: { type: "Age", maxAge: 30 * DAY_SECONDS } },
    });
    expect(byId["expire-incremental"]?.deleteObjectsTransition?.condition.maxAge).toBe(2_592_000);
    expect(byId["daily-to-infrequent-access"]?.storageClassTransitions).toEqual([{ storageClass: "InfrequentAccess", condition: { type: "Age", maxAge: 7_776_000 } }]);
    expect(byId["expire-daily"]?.deleteObjectsTransition?.condition.maxAge).toBe(365 * 86_400);
    expect(byId["abort-incomplete-multipart"]).toEqual({
      id: "abort-incomplete-multipart",
      enabled: true,
      conditions: { prefix: "" },
      abortMultipartUploadsTransition: { condition: { type: "Age", maxAge: 86_400 } },
    });
    // Write claims a dead Worker left behind go after a day; none is kept or locked.
    expect(byId["expire-stale-claims"]).toEqual({
      id: "expire-stale-claims",
      enabled: true,
      conditions: { prefix: ".claims/" },
      deleteObjectsTransition: { condition: { type: "Age", maxAge: 86_400 } },
    });
    expect(lockRules(DEFAULT_RETENTION).some((r) => r.prefix.startsWith(".claims"))).toBe(false);
    expect(JSON.stringify(rules)).not.toMatch(/GLACIER/i);
    expect(rules.some((r) => r.conditions.prefix.startsWith("backups/state"))).toBe(false);
  });

  it("locks every prefix under backups/ except state/, one rule each", () => {
    const rules = lockRules(DEFAULT_RETENTION);
    expect(rules.map((r) => r.prefix)).toEqual(["backups/full/", "backups/incremental/", "backups/daily/", "backups/drills/"]);
    expect(rules.every((r) => r.enabled && r.condition.type === "Age" && r.condition.maxAgeSeconds === 7 * DAY_SECONDS)).toBe(true);
    expect(new Set(rules.map((r) => r.id)).size).toBe(rules.length);
  });

  it("has no lock when lockDays is 0 (preview stacks)", () => {
    expect(lockRules({ ...DEFAULT_RETENTION, lockDays: 0 })).toEqual([]);
  });

  it.each([
    [{ ...DEFAULT_RETENTION, fullDays: 0 }, /fullDays: expected a whole number >= 1, got 0/],
    [{ ...DEFAULT_RETENTION, fullDays: 1.5 }, /fullDays: expected a whole number >= 1, got 1.5/],
    [{ ...DEFAULT_RETENTION, dailyInfrequentAccessDays: 365 }, /dailyInfrequentAccessDays \(365\) must be less than dailyDays \(365\)/],
    [{ ...DEFAULT_RETENTION, lockDays: 31 }, /lockDays \(31\) must not exceed fullDays \(30\)/],
    [{ ...DEFAULT_RETENTION, glacierDays: 10 }, /glacierDays: unknown field \(expected only fullDays, incrementalDays, /],
  ])("rejects %j naming the problem", (policy, message) => {
    expect(() => validateRetentionPolicy(policy)).toThrow(message);
    expect(() => validateRetentionPolicy(policy)).toThrow(/^validate retention policy/);
  });

  // Each field's rule: one policy it accepts, one it refuses (the rest of the policy is the default).
  it.each<[string, number, unknown, string]>([
    ["fullDays", 7, "30", "fullDays: expected a whole number >= 1, got 30"],
    ["incrementalDays", 7, -1, "incrementalDays: expected a whole number >= 1, got -1"],
    ["dailyInfrequentAccessDays", 1, null, "dailyInfrequentAccessDays: expected a whole number >= 1, got null"],
    ["dailyDays", 3650, Number.POSITIVE_INFINITY, "dailyDays: expected a whole number >= 1, got Infinity"],
    ["drillDays", 7, undefined, "drillDays: expected a whole number >= 1, got nothing"],
    ["abortMultipartDays", 2, 0, "abortMultipartDays: expected a whole number >= 1, got 0"],
    ["lockDays", 0, -1, "lockDays: expected a whole number >= 0, got -1"],
  ])("%s: takes %j, refuses %j", (field, good, bad, message) => {
    expect(validateRetentionPolicy({ ...DEFAULT_RETENTION, [field]: good })).toEqual({ ...DEFAULT_RETENTION, [field]: good });
    expect(() => validateRetentionPolicy({ ...DEFAULT_RETENTION, [field]: bad })).toThrow(message);
  });

  it("names every problem at once, and refuses a policy that is not an object", () => {
    expect(() => validateRetentionPolicy({ ...DEFAULT_RETENTION, fullDays: 0, lockDays: "7" })).toThrow(
      "fullDays: expected a whole number >= 1, got 0; lockDays: expected a whole number >= 0, got 7",
    );
    expect(() => validateRetentionPolicy([])).toThrow("validate retention policy '[]': (root): expected an object, got []");
  });

  it("explains each key's fate", () => {
    const up = new Date("2026-01-01T00:00:00Z");
    const daily = explainRetention(DEFAULT_RETENTION, "backups/daily/2026-01-01/metadata.json", up);
    expect(daily.infrequentAccessAt?.toISOString()).toBe("2026-04-01T00:00:00.000Z");
    expect(daily.deleteAt?.toISOString()).toBe("2027-01-01T00:00:00.000Z");
    expect(daily.lockedUntil?.toISOString()).toBe("2026-01-08T00:00:00.000Z");
    const state = explainRetention(DEFAULT_RETENTION, "backups/state/latest.json", up);
    expect(state.deleteAt).toBeUndefined();
    expect(state.lockedUntil).toBeUndefined();
  });
});
