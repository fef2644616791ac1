import { MANIFEST_FILE, PREFIXES, parseBackupKey } from "./keys.ts";

/**
 * A backup catalog built from a plain key listing: every set with its files, and whether its manifest is
 * present. Pure, so the Worker (`/api/status`), the job (`list`, `restore`) and tests share it.
 */
export interface CatalogSet {
  kind: "full" | "incremental" | "daily";
  /** Timestamp (full, incremental) or day (daily). */
  id: string;
  files: string[];
  /** True when `metadata.json` is present: only complete sets are restorable. */
  complete: boolean;
}

export interface Catalog {
  full: CatalogSet[];
  incremental: CatalogSet[];
  daily: CatalogSet[];
  /** Timestamps of passed restore drills. */
  drills: string[];
  /** Timestamps of failed restore drills. */
  failedDrills: string[];
  /** Keys that are not part of the layout (reported, never used). */
  unknown: string[];
}

/** Groups keys into sets, each list sorted oldest first (string order is time order). */
export function catalogFromKeys(keys: Iterable<string>): Catalog {
  const sets = { full: new Map<string, CatalogSet>(), incremental: new Map<string, CatalogSet>(), daily: new Map<string, CatalogSet>() };
  const drills: string[] = [];
  const failedDrills: string[] = [];
  const unknown: string[] = [];
  for (const key of keys) {
    let parsed;
    try {
      parsed = parseBackupKey(key);
    } catch {
      unknown.push(key);
      continue;
    }
    if (parsed.kind === "drill") (parsed.failed ? failedDrills : drills).push(parsed.ts);
    else if (parsed.kind === "state") continue;
    else {
      const id = parsed.kind === "daily" ? parsed.day : parsed.ts;
      const map = sets[parsed.kind];
      let set = map.get(id);
      if (!set) map.set(id, (set = { kind: parsed.kind, id, files: [], complete: false }));
      set.files.push(parsed.file);
      if (parsed.file === MANIFEST_FILE) set.complete = true;
    }
  }
  const sorted = (m: Map<string, CatalogSet>) => [...m.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((s) => ({ ...s, files: s.files.sort() }));
  return { full: sorted(sets.full), incremental: sorted(sets.incremental), daily: sorted(sets.daily), drills: drills.sort(), failedDrills: failedDrills.sort(), unknown };
}

/** The newest complete set of a list (sorted oldest first), if any. */
export function newestComplete(sets: readonly CatalogSet[]): CatalogSet | undefined {
  for (let i = sets.length - 1; i >= 0; i--) if (sets[i]!.complete) return sets[i];
  return undefined;
}

/** The prefix of a catalog set, e.g. `backups/full/20260131T060000Z/`. */
export function setPrefix(set: CatalogSet): string {
  return `${PREFIXES[set.kind]}${set.id}/`;
}

/**
 * The complete sets of `primary` whose manifest `replica` lacks, in the order the replica copy takes them:
 * fulls and incrementals oldest first, whatever their kind, then the daily copies. A copy that stops on its
 * budget has then copied a prefix of the chain, so the replica's chain index (the Worker's `mirrorChain`, up to
 * the newest set held) lists no set the replica lacks. (With every full first, a newer full could be held
 * before an older incremental, which the index then listed.)
 */
export function missingFromReplica(primary: Catalog, replica: Catalog): CatalogSet[] {
  const present = new Set([...replica.full, ...replica.incremental, ...replica.daily].filter((s) => s.complete).map(setPrefix));
  const chain = [...primary.full, ...primary.incremental].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.kind === "full" ? -1 : 1));
  return [...chain, ...primary.daily].filter((s) => s.complete && !present.has(setPrefix(s)));
}
