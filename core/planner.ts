import { ContractError } from "./errors.ts";
import { dayOfTimestamp, formatTimestamp, type BackupDay, type BackupTimestamp } from "./time.ts";

/**
 * Pure planning over what the bucket holds: daily promotion, and which full backup plus which incremental
 * chain restore a given time. Every answer says why, so `restore --dry-run` can print it.
 */

/** A complete or incomplete backup set as the planner sees it (chain links come from its manifest). */
export interface PlanSet {
  kind: "full" | "incremental" | "daily";
  /** Timestamp for full/incremental, `YYYY-MM-DD` for daily. */
  id: string;
  complete: boolean;
  /** Incremental: the full backup its chain starts from. */
  base?: BackupTimestamp;
  /** Incremental: the set it continues. */
  previous?: BackupTimestamp | null;
  /** Daily: the full backup it is a copy of. */
  promotedFrom?: BackupTimestamp;
}

/** `auto` takes a full backup once the newest is this many hours old (`--full-every-hours`). */
export const DEFAULT_FULL_EVERY_HOURS = 6;

/**
 * The age, in hours, at which `auto` takes a full backup when one is wanted every `hours`: a tenth (at most 30 min)
 * early counts. A cron every `hours` starts its next run a moment less than `hours` after the last full's data
 * was read; without the margin every other run would be an incremental, and the newest full would age to twice
 * `hours`, past the freshness alert.
 */
export function fullDueHours(hours: number): number {
  return hours - Math.min(0.5, hours / 10);
}

export interface PromotionDecision {
  promote: boolean;
  day: BackupDay;
  reason: string;
}

/**
 * Daily promotion: a complete full backup is copied to `daily/<day>/` when its UTC day has no complete
 * daily copy yet. Normally that is the first complete full of the day; when that one's promotion failed,
 * the next full of the day takes its place rather than leaving the day without a daily.
 */
export function planDailyPromotion(candidate: BackupTimestamp, sets: readonly PlanSet[]): PromotionDecision {
  const day = dayOfTimestamp(candidate);
  const daily = sets.find((s) => s.kind === "daily" && s.id === day && s.complete);
  if (daily) {
    return { promote: false, day, reason: `${day} already has a daily copy (of ${daily.promotedFrom ?? "an earlier full backup"})` };
  }
  const earlier = sets.filter((s) => s.kind === "full" && s.complete && s.id < candidate && dayOfTimestamp(s.id) === day);
  if (earlier.length === 0) return { promote: true, day, reason: `${candidate} is the first complete full backup of ${day}` };
  return { promote: true, day, reason: `${day} has no daily copy yet (the earlier full ${earlier[0]!.id} was not promoted)` };
}

export interface RestoreStep {
  kind: "full" | "daily" | "incremental";
  /** The set's id in its own location (a day for daily). */
  id: string;
  /** The time the step brings the database to. */
  ts: BackupTimestamp;
}

export interface RestorePlan {
  /** The requested time, or "latest". */
  at: string;
  full: RestoreStep;
  chain: RestoreStep[];
  /** The set the restored database will reflect (its id). */
  restoresTo: BackupTimestamp;
  /** When that set's data was read, on the Worker's clock (sets from 0.3 on). */
  capturedAt?: string;
  /** Why each set was chosen or passed over. */
  notes: string[];
}

/**
 * Chooses the newest complete full backup at or before `at` (a daily copy when the full one has expired),
 * then the contiguous chain of complete incrementals after it up to `at`. A chain that names a missing or
 * incomplete set is a gap: an error naming it and the latest time that can still be restored.
 * Incomplete sets are never chosen.
 */
export function planRestore(at: Date | "latest", sets: readonly PlanSet[]): RestorePlan {
  const atLabel = at === "latest" ? "latest" : formatTimestamp(at);
  const limit = at === "latest" ? "99999999T999999Z" : atLabel;
  const notes: string[] = [];

  const fullsByTs = new Map<string, RestoreStep>();
  for (const s of sets) {
    if (!s.complete) continue;
    if (s.kind === "daily" && s.promotedFrom && !fullsByTs.has(s.promotedFrom)) {
      fullsByTs.set(s.promotedFrom, { kind: "daily", id: s.id, ts: s.promotedFrom });
    }
    if (s.kind === "full") fullsByTs.set(s.id, { kind: "full", id: s.id, ts: s.id });
  }
  const fulls = [...fullsByTs.values()].sort((a, b) => (a.ts < b.ts ? -1 : 1));
  const candidates = fulls.filter((f) => f.ts <= limit);
  const full = candidates.at(-1);
  if (!full) {
    const oldest = fulls[0];
    throw new ContractError(
      "plan",
      "restore at",
      atLabel,
      oldest ? `no complete full backup at or before it; the oldest is ${oldest.ts}` : "the bucket holds no complete full backup",
      oldest ? `use --at ${oldest.ts} or later` : "run a full backup first: r2backup run --kind full",
    );
  }
  for (const s of sets) {
    if (!s.complete && s.kind === "full" && s.id > full.ts && s.id <= limit) notes.push(`passed over full ${s.id}: incomplete (no metadata.json)`);
  }
  notes.push(`full ${full.ts} from ${full.kind === "daily" ? `daily/${full.id}` : "full/"}: the newest complete full backup at or before ${atLabel}`);

  const incrementals = sets.filter((s) => s.kind === "incremental" && s.id > full.ts && s.id <= limit).sort((a, b) => (a.id < b.id ? -1 : 1));
  const chain: RestoreStep[] = [];
  let tip = full.ts;
  for (const inc of incrementals) {
    if (!inc.complete) {
      notes.push(`passed over incremental ${inc.id}: incomplete (no metadata.json)`);
      continue;
    }
    if (inc.base !== full.ts) {
      notes.push(`passed over incremental ${inc.id}: it continues full ${inc.base ?? "?"}, not ${full.ts}`);
      continue;
    }
    if (inc.previous !== tip) {
      const prior = chain.some((c) => c.ts === inc.previous) || inc.previous === full.ts;
      throw new ContractError(
        "plan",
        "restore at",
        atLabel,
        prior
          ? `the chain forks: incremental ${inc.id} continues ${inc.previous}, but ${tip} already does`
          : `gap in the incremental chain: ${inc.id} continues ${inc.previous ?? "nothing"}, which is missing or incomplete`,
        `restore up to ${tip} with --at ${tip}`,
      );
    }
    chain.push({ kind: "incremental", id: inc.id, ts: inc.id });
    tip = inc.id;
  }
  if (chain.length > 0) notes.push(`then ${chain.length} incremental(s) up to ${tip}`);
  return { at: atLabel, full, chain, restoresTo: tip, notes };
}
