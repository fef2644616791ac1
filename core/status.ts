import type { ApiReplicaStatus, ApiStatus, ApiStatusEntry } from "./api.ts";
import { newestComplete, type Catalog, type CatalogSet } from "./catalog.ts";
import { PREFIXES } from "./keys.ts";
import { parseDay, parseTimestamp } from "./time.ts";

/**
 * The health of a bucket as `GET /api/status` and `r2backup status` report it: the newest complete full,
 * incremental, daily and drill with their ages, and `healthy` when the newest complete full backup is at
 * most `maxBackupAgeHours` old (the dead-man's switch of docs/design.md). `drill` is the newest PASSED drill; a
 * newer failed one is a warning.
 */
export function summarizeStatus(catalog: Catalog, now: Date, maxBackupAgeHours: number): ApiStatus {
  const entry = (id: string | undefined, at: Date | undefined): ApiStatusEntry | null =>
    id === undefined || at === undefined ? null : { id, at: at.toISOString(), ageHours: Math.round(((now.getTime() - at.getTime()) / 3_600_000) * 100) / 100 };
  const full = newestComplete(catalog.full);
  const inc = newestComplete(catalog.incremental);
  const daily = newestComplete(catalog.daily);
  const drill = catalog.drills.at(-1);
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
  const failedDrill = catalog.failedDrills.at(-1);
  if (failedDrill !== undefined && (drill === undefined || failedDrill > drill)) {
    status.warnings.push(`the last restore drill ${failedDrill} failed${drill ? `; the last good one is ${drill}` : "; none has passed yet"}`);
  }
  if (!status.full) status.problems.push("no complete full backup");
  else if (status.full.ageHours > maxBackupAgeHours) {
    status.problems.push(`the newest complete full backup ${status.full.id} is ${status.full.ageHours} hours old (limit ${maxBackupAgeHours})`);
  }
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
