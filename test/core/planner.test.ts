import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { formatTimestamp, planDailyPromotion, planRestore, type PlanSet } from "../../core/index.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const ts = (minutes: number) => formatTimestamp(new Date(T0 + minutes * 60_000));

/** Simulates the job: each complete full starts a chain; each complete incremental continues the tip. */
function simulate(events: { kind: "full" | "incremental"; complete: boolean; gap: number }[]): PlanSet[] {
  const sets: PlanSet[] = [];
  let minute = 0;
  let base: string | undefined;
  let tip: string | undefined;
  for (const e of events) {
    minute += e.gap;
    const id = ts(minute);
    if (e.kind === "full") {
      sets.push({ kind: "full", id, complete: e.complete });
      if (e.complete) base = tip = id;
    } else if (base) {
      sets.push(e.complete ? { kind: "incremental", id, complete: true, base, previous: tip } : { kind: "incremental", id, complete: false });
      if (e.complete) tip = id;
    }
  }
  return sets;
}

const history = fc
  .array(fc.record({ kind: fc.constantFrom("full" as const, "incremental" as const), complete: fc.boolean(), gap: fc.integer({ min: 1, max: 600 }) }), {
    minLength: 1,
    maxLength: 40,
  })
  .map(simulate);

describe("planRestore", () => {
  it("restores latest from the newest complete full and its whole chain (property)", () => {
    fc.assert(
      fc.property(history, (sets) => {
        const fulls = sets.filter((s) => s.kind === "full" && s.complete);
        if (fulls.length === 0) {
          expect(() => planRestore("latest", sets)).toThrow(/no complete full backup/);
          return;
        }
        const plan = planRestore("latest", sets);
        const newest = fulls.at(-1)!;
        expect(plan.full.ts).toBe(newest.id);
        const expected = sets.filter((s) => s.kind === "incremental" && s.complete && s.base === newest.id).map((s) => s.id);
        expect(plan.chain.map((c) => c.id)).toEqual(expected);
        expect(plan.restoresTo).toBe(expected.at(-1) ?? newest.id);
      }),
    );
  });

  it("never chooses an incomplete set, and the chain is contiguous (property)", () => {
    fc.assert(
      fc.property(history, fc.integer({ min: 0, max: 40 * 600 }), (sets, minute) => {
        const at = new Date(T0 + minute * 60_000);
        let plan;
        try {
          plan = planRestore(at, sets);
        } catch (e) {
          expect((e as Error).message).toMatch(/no complete full backup/);
          return;
        }
        const byId = new Map(sets.map((s) => [`${s.kind}/${s.id}`, s]));
        expect(byId.get(`full/${plan.full.id}`)?.complete).toBe(true);
        expect(plan.full.ts <= formatTimestamp(at)).toBe(true);
        let tip = plan.full.ts;
        for (const step of plan.chain) {
          const set = byId.get(`incremental/${step.id}`)!;
          expect(set.complete).toBe(true);
          expect(set.previous).toBe(tip);
          expect(step.ts <= formatTimestamp(at)).toBe(true);
          tip = step.id;
        }
      }),
    );
  });

  it("reports a gap when a complete incremental of the chain is lost (property)", () => {
    fc.assert(
      fc.property(history, fc.nat(), (sets, pick) => {
        const newest = sets.filter((s) => s.kind === "full" && s.complete).at(-1);
        const chain = sets.filter((s) => s.kind === "incremental" && s.complete && s.base === newest?.id);
        fc.pre(chain.length >= 2);
        const lost = chain[pick % (chain.length - 1)]!; // never the last: something must continue it
        const remaining = sets.filter((s) => s !== lost);
        expect(() => planRestore("latest", remaining)).toThrow(`gap in the incremental chain`);
        expect(() => planRestore("latest", remaining)).toThrow(`continues ${lost.id}, which is missing or incomplete`);
      }),
    );
  });

  const sets: PlanSet[] = [
    { kind: "full", id: "20260101T000000Z", complete: true },
    { kind: "incremental", id: "20260101T010000Z", complete: true, base: "20260101T000000Z", previous: "20260101T000000Z" },
    { kind: "incremental", id: "20260101T020000Z", complete: false },
    { kind: "incremental", id: "20260101T030000Z", complete: true, base: "20260101T000000Z", previous: "20260101T010000Z" },
    { kind: "full", id: "20260101T060000Z", complete: false },
  ];

  it("restores a time between two incrementals to the earlier one", () => {
    const plan = planRestore(new Date("2026-01-01T02:30:00Z"), sets);
    expect(plan.full).toEqual({ kind: "full", id: "20260101T000000Z", ts: "20260101T000000Z" });
    expect(plan.chain.map((c) => c.id)).toEqual(["20260101T010000Z"]);
    expect(plan.restoresTo).toBe("20260101T010000Z");
    expect(plan.notes).toContain("passed over incremental 20260101T020000Z: incomplete (no metadata.json)");
  });

  it("passes over an incomplete full backup and says so", () => {
    const plan = planRestore("latest", sets);
    expect(plan.full.id).toBe("20260101T000000Z");
    expect(plan.restoresTo).toBe("20260101T030000Z");
    expect(plan.notes).toContain("passed over full 20260101T060000Z: incomplete (no metadata.json)");
  });

  it("falls back to the daily copy when the full backup has expired", () => {
    const plan = planRestore(new Date("2026-01-02T00:00:00Z"), [{ kind: "daily", id: "2026-01-01", complete: true, promotedFrom: "20260101T000000Z" }]);
    expect(plan.full).toEqual({ kind: "daily", id: "2026-01-01", ts: "20260101T000000Z" });
  });

  it("names the oldest restorable time when asked for a time before every backup", () => {
    expect(() => planRestore(new Date("2025-12-31T00:00:00Z"), sets)).toThrow(
      "plan restore at '20251231T000000Z': no complete full backup at or before it; the oldest is 20260101T000000Z (use --at 20260101T000000Z or later)",
    );
  });

  it("names a gap and the latest time that can still be restored", () => {
    const gap: PlanSet[] = [sets[0]!, { kind: "incremental", id: "20260101T030000Z", complete: true, base: "20260101T000000Z", previous: "20260101T020000Z" }];
    expect(() => planRestore("latest", gap)).toThrow(
      "plan restore at 'latest': gap in the incremental chain: 20260101T030000Z continues 20260101T020000Z, which is missing or incomplete (restore up to 20260101T000000Z with --at 20260101T000000Z)",
    );
  });

  it("reports a fork in the chain", () => {
    const fork: PlanSet[] = [...sets.slice(0, 2), { kind: "incremental", id: "20260101T013000Z", complete: true, base: "20260101T000000Z", previous: "20260101T000000Z" }];
    expect(() => planRestore("latest", fork)).toThrow(/the chain forks: incremental 20260101T013000Z continues 20260101T000000Z/);
  });
});

describe("planDailyPromotion", () => {
  it("promotes the first complete full backup of a UTC day", () => {
    const d = planDailyPromotion("20260101T000000Z", [{ kind: "full", id: "20251231T180000Z", complete: true }]);
    expect(d).toEqual({ promote: true, day: "2026-01-01", reason: "20260101T000000Z is the first complete full backup of 2026-01-01" });
  });

  it("does not promote when the day already has a daily copy", () => {
    const d = planDailyPromotion("20260101T060000Z", [
      { kind: "full", id: "20260101T000000Z", complete: true },
      { kind: "daily", id: "2026-01-01", complete: true, promotedFrom: "20260101T000000Z" },
    ]);
    expect(d.promote).toBe(false);
    expect(d.reason).toBe("2026-01-01 already has a daily copy (of 20260101T000000Z)");
  });

  it("promotes a later full when the earlier one's promotion did not complete", () => {
    const d = planDailyPromotion("20260101T060000Z", [
      { kind: "full", id: "20260101T000000Z", complete: true },
      { kind: "daily", id: "2026-01-01", complete: false },
    ]);
    expect(d).toMatchObject({ promote: true, reason: "2026-01-01 has no daily copy yet (the earlier full 20260101T000000Z was not promoted)" });
  });

  it("ignores incomplete fulls and other days when deciding what is first", () => {
    const d = planDailyPromotion("20260101T120000Z", [
      { kind: "full", id: "20260101T000000Z", complete: false },
      { kind: "full", id: "20251231T230000Z", complete: true },
    ]);
    expect(d.reason).toBe("20260101T120000Z is the first complete full backup of 2026-01-01");
  });
});
