import { MANIFEST_FILE, parseBackupKey } from "./keys.ts";

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
