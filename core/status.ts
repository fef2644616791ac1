import { MAX_CLOCK_SKEW_MS, type ApiReplicaStatus, type ApiStatus, type ApiStatusEntry } from "./api.ts";
import { newestComplete, type Catalog, type CatalogSet } from "./catalog.ts";
import { PREFIXES, isFutureDay, isFutureTimestamp } from "./keys.ts";
import { parseDay, parseTimestamp } from "./time.ts";

/** Hours from `at` to `now`, to 2 decimals (negative when `at` is later). */
function hoursBetween(at: Date, now: Date): number {
  return Math.round(((now.getTime() - at.getTime()) / 3_600_000) * 100) / 100;
}

/**
 * The health of a bucket as `GET /api/status` and `r2backup status` report it: the newest complete full,
 * incremental, daily and drill with their ages, and `healthy` when the newest complete full backup is at
 * most `maxBackupAgeHours` old (the dead-man's switch of docs/design.md). `drill` is the newest PASSED drill; a
 * newer failed one is a warning.
 *
 * One clock (issue 13): a set or drill dated more than MAX_CLOCK_SKEW_MS after `now` (a clock ahead, or a
 * stray object) is a problem, never the newest: each entry is the newest that is not from the future, so a
 * stray `full/99991231T235959Z/metadata.json` cannot make an old chain look fresh. No age is negative.
 */
export function summarizeStatus(catalog: Catalog, now: Date, maxBackupAgeHours: number): ApiStatus {
  const problems: string[] = [];
  const entry = (id: string | undefined, at: Date | undefined): ApiStatusEntry | null =>
    id === undefined || at === undefined ? null : { id, at: at.toISOString(), ageHours: Math.max(0, hoursBetween(at, now)) };
  /** Sets of one kind up to the skew horizon; the later ones become one problem naming the newest of them. */
  const present = <T>(label: string, items: readonly T[], idOf: (item: T) => string, dateOf: (id: string) => Date, future: (id: string) => boolean): T[] => {
    const kept = items.filter((item) => !future(idOf(item)));
    const ahead = items.filter((item) => future(idOf(item)));
    const newest = ahead.at(-1);
    if (newest !== undefined) {
      const id = idOf(newest);
      const at = dateOf(id);
      problems.push(
        `the newest ${label} ${id} is dated ${at.toISOString()}, ${-hoursBetween(at, now)} hours in the future: a clock ahead or a stray object` +
          `${ahead.length > 1 ? ` (${ahead.length} ${label}s are in the future)` : ""}; it is not counted as fresh (check the clock of whatever wrote it, then remove it with the admin token)`,
      );
    }
    return kept;
  };
  const futureTs = (id: string) => isFutureTimestamp(id, now, MAX_CLOCK_SKEW_MS);
  const setId = (set: CatalogSet) => set.id;
  const fulls = present("full backup", catalog.full, setId, parseTimestamp, futureTs);
  const incs = present("incremental backup", catalog.incremental, setId, parseTimestamp, futureTs);
  const dailies = present("daily backup", catalog.daily, setId, parseDay, (id) => isFutureDay(id, now, MAX_CLOCK_SKEW_MS));
  const drills = present("restore drill", catalog.drills, (id) => id, parseTimestamp, futureTs);
  const failedDrills = present("failed restore drill", catalog.failedDrills, (id) => id, parseTimestamp, futureTs);
  const full = newestComplete(fulls);
  const inc = newestComplete(incs);
  const daily = newestComplete(dailies);
  const drill = drills.at(-1);
  const status: ApiStatus = {
    healthy: false,
    now: now.toISOString(),
    maxBackupAgeHours,
    full: entry(full?.id, full && parseTimestamp(full.id)),
    incremental: entry(inc?.id, inc && parseTimestamp(inc.id)),
    daily: entry(daily?.id, daily && parseDay(daily.id)),
    drill: entry(drill, drill === undefined ? undefined : parseTimestamp(drill)),
    problems: [],
    warnings: [],
  };
  const failedDrill = failedDrills.at(-1);
  if (failedDrill !== undefined && (drill === undefined || failedDrill > drill)) {
    status.warnings.push(`the last restore drill ${failedDrill} failed${drill ? `; the last good one is ${drill}` : "; none has passed yet"}`);
  }
  if (!status.full) status.problems.push(catalog.full.some((s) => s.complete) ? "no complete full backup that is not dated in the future" : "no complete full backup");
  else if (status.full.ageHours > maxBackupAgeHours) {
    status.problems.push(`the newest complete full backup ${status.full.id} is ${status.full.ageHours} hours old (limit ${maxBackupAgeHours})`);
  }
  status.problems.push(...problems);
  status.healthy = status.problems.length === 0;
  return status;
}

/** The replica lag limit when `REPLICA_MAX_LAG_HOURS` is not set: two 6-hourly backups behind. */
export const DEFAULT_REPLICA_MAX_LAG_HOURS = 12;

/**
 * The replica's lag from the complete sets it lacks (oldest first): their count, prefixes, and the age of
 * the oldest, from its id (the time the Worker gave it). `behind` when that age is over `maxLagHours`:
 * a replica that catches up within the limit never alarms, one that stays behind does.
 */
export function summarizeReplica(missing: readonly CatalogSet[], now: Date, maxLagHours: number): ApiReplicaStatus {
  const taken = missing.map((s) => (s.kind === "daily" ? parseDay(s.id) : parseTimestamp(s.id)).getTime());
  const oldest = taken.length === 0 ? now.getTime() : Math.min(...taken);
  const oldestMissingAgeHours = Math.max(0, Math.round(((now.getTime() - oldest) / 3_600_000) * 100) / 100);
  return {
    lag: missing.length,
    missing: missing.map((s) => `${PREFIXES[s.kind]}${s.id}/`),
    oldestMissingAgeHours,
    maxLagHours,
    behind: missing.length > 0 && oldestMissingAgeHours > maxLagHours,
  };
}
