import { describe, expect, it } from "vitest";
import { entriesForRestore, headFromEntries, type ChainEntry } from "../../core/chain.ts";

/** A linear chain: one full then incrementals, each `[id time, capturedAt]` (capturedAt after its id: the data is read after the id is given). */
function chain(sets: [string, string][]): ChainEntry[] {
  const ts = (iso: string) => iso.replace(/[-:]/g, "").replace(/\.\d+/, "");
  const full = ts(sets[0]![0]);
  return sets.map(([id, capturedAt], i) => ({
    kind: i === 0 ? "full" : "incremental",
    id: ts(id),
    base: full,
    previous: i === 0 ? null : ts(sets[i - 1]![0]),
    capturedAt: new Date(capturedAt).toISOString(),
    sources: ["app"],
  }));
}

describe("entriesForRestore: the sets a restore at a time needs", () => {
  // Runs in quick succession: each id one second past the tip, each set's data read up to ~1 s after its id.
  const entries = chain([
    ["2026-12-02T10:00:07Z", "2026-12-02T10:00:08.200Z"],
    ["2026-12-02T10:00:08Z", "2026-12-02T10:00:08.700Z"],
    ["2026-12-02T10:00:09Z", "2026-12-02T10:00:09.950Z"],
    ["2026-12-02T10:00:10Z", "2026-12-02T10:00:10.200Z"],
  ]);
  const { head } = headFromEntries(entries, new Date("2026-12-02T10:01:00Z"));
  const noSegments = async () => {
    throw new Error("no sealed segments in this chain");
  };
  const at = (iso: string | "latest") => entriesForRestore(head, iso === "latest" ? "latest" : Date.parse(iso), noSegments);
  const ids = (r: Awaited<ReturnType<typeof at>>) => (r ? [r.full.id, ...r.after.map((e) => e.id)] : undefined);

  it.each([
    ["latest", ["20261202T100007Z", "20261202T100008Z", "20261202T100009Z", "20261202T100010Z"]],
    // A set's own id names that set, though its data was read after it (and the set before it too).
    ["2026-12-02T10:00:07Z", ["20261202T100007Z"]],
    ["2026-12-02T10:00:08Z", ["20261202T100007Z", "20261202T100008Z"]],
    ["2026-12-02T10:00:10Z", ["20261202T100007Z", "20261202T100008Z", "20261202T100009Z", "20261202T100010Z"]],
    // Any other time: the sets whose data was read by then, no later.
    ["2026-12-02T10:00:08.500Z", ["20261202T100007Z"]],
    ["2026-12-02T10:00:09.960Z", ["20261202T100007Z", "20261202T100008Z", "20261202T100009Z"]],
    ["2026-12-02T10:00:06Z", undefined],
    ["2026-12-02T10:00:07.500Z", undefined],
  ] as const)("at %s", async (time, expected) => {
    expect(ids(await at(time))).toEqual(expected);
  });
});
