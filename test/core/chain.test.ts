import { describe, expect, it } from "vitest";
import { chainFromManifests, entriesForRestore, headFromEntries, linearProblem, type ChainEntry } from "../../core/chain.ts";

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

  it("of one database, when two take turns in the bucket: its newest full and the incrementals continuing it", async () => {
    // alpha: full 1, incremental 2; beta: full 3, incremental 4; alpha again: full 5.
    const e = (n: number, kind: "full" | "incremental", source: string, previous: number | null, base: number): ChainEntry => ({
      kind,
      id: `20261202T10000${n}Z`,
      base: `20261202T10000${base}Z`,
      previous: previous === null ? null : `20261202T10000${previous}Z`,
      capturedAt: `2026-12-02T10:00:0${n}.500Z`,
      sources: [source],
    });
    const turns = [e(1, "full", "alpha", null, 1), e(2, "incremental", "alpha", 1, 1), e(3, "full", "beta", null, 3), e(4, "incremental", "beta", 3, 3)];
    const two = headFromEntries(turns, new Date("2026-12-02T10:01:00Z")).head;
    const of = async (source: string | undefined, time: string | "latest") =>
      ids(await entriesForRestore(two, time === "latest" ? "latest" : Date.parse(time), noSegments, source));
    expect(await of("alpha", "latest")).toEqual(["20261202T100001Z", "20261202T100002Z"]);
    expect(await of("beta", "latest")).toEqual(["20261202T100003Z", "20261202T100004Z"]);
    expect(await of(undefined, "latest")).toEqual(["20261202T100003Z", "20261202T100004Z"]);
    expect(await of("alpha", "2026-12-02T10:00:01.600Z")).toEqual(["20261202T100001Z"]);
    expect(await of("beta", "2026-12-02T10:00:02.600Z")).toBeUndefined();
    expect(await of("gamma", "latest")).toBeUndefined();
  });
});

describe("chainFromManifests: the chain rebuilt from the manifests (chain --rebuild)", () => {
  /** A manifest as the chain reads it: `F<n>` a full, `I<n>:<m>` an incremental continuing set m (ids are seconds). */
  const id = (n: number) => `20260105T0000${String(n).padStart(2, "0")}Z`;
  function manifests(spec: string): unknown[] {
    const sets = spec.split(" ").map((s) => {
      const [name, prev] = s.slice(1).split(":");
      return { kind: s[0] === "F" ? ("full" as const) : ("incremental" as const), n: Number(name), prev: prev === undefined ? undefined : Number(prev) };
    });
    const baseOf = (n: number): number => {
      const set = sets.find((x) => x.n === n);
      if (!set) return 1; // a set not given: the first full's
      return set.kind === "full" ? n : baseOf(set.prev!);
    };
    return sets.map((x) => ({
      format: "r2-sqlite-backup/manifest@1",
      kind: x.kind,
      id: id(x.n),
      base: id(x.kind === "full" ? x.n : baseOf(x.prev!)),
      previous: x.kind === "full" ? null : id(x.prev!),
      capturedAt: new Date(Date.UTC(2026, 0, 5, 0, 0, x.n, 500)).toISOString(),
      sources: [{ source: "app" }],
    }));
  }
  const ids = (ns: number[]) => ns.map(id);
  it.each([
    ["a linear chain is kept whole", "F1 I2:1 I3:2 F4 I5:4", [1, 2, 3, 4, 5], []],
    ["an incremental orphan before the set that won is left out", "F1 I2:1 I3:2 I4:2 I5:4", [1, 2, 4, 5], [3]],
    ["a full orphan before the incremental that won is left out", "F1 I2:1 F3 I4:2 I5:4", [1, 2, 4, 5], [3]],
    ["several orphans at once", "F1 I2:1 I3:2 F4 I5:2 I6:5", [1, 2, 5, 6], [3, 4]],
    ["orphans given in any order", "I5:4 I3:2 F1 I4:2 I2:1", [1, 2, 4, 5], [3]],
    ["of two leaves continuing one set, the newer stays", "F1 I2:1 I3:1", [1, 3], [2]],
    ["an orphan newest of all, continuing a set before a committed full, does not take the full's place", "F1 I2:1 F3 I4:2", [1, 2, 3], [4]],
    ["a fork whose both branches go on (no chain yet, before 0.3): the older branch stays", "F1 I2:1 I3:1 I4:2 I5:3", [1, 2, 4], [3, 5]],
    ["an incremental whose set is missing is left out", "F1 I2:1 I4:3", [1, 2], [4]],
  ])("%s", (_what, spec, kept, left) => {
    const { entries, leftOut } = chainFromManifests(manifests(spec));
    expect(entries.map((e) => e.id)).toEqual(ids(kept));
    expect(leftOut.map((l) => l.id)).toEqual(ids(left));
    expect(linearProblem(entries)).toBeUndefined();
  });

  it("names why an orphan is left out", () => {
    const { leftOut } = chainFromManifests(manifests("F1 I2:1 I3:2 I4:2"));
    expect(leftOut).toEqual([{ id: id(3), reason: `it lost the race to commit: ${id(4)} continues ${id(2)}, the set before it` }]);
  });
});
