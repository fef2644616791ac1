import { PREFIXES, catalogFromKeys, parseTimestamp } from "../core/index.ts";
import type { BackupStore } from "./store/types.ts";

/**
 * Hours since the newest successful restore drill recorded in the bucket, or undefined when none passed.
 * Drill keys say whether the drill passed (core/keys.ts), so the listing alone answers. Backups and
 * drills both report it, so the "no drill for 35 days" alarm sees a datapoint every 6 hours.
 */
export async function lastGoodDrillAgeHours(store: BackupStore, now: Date): Promise<number | undefined> {
  const last = catalogFromKeys((await store.listAll(PREFIXES.drills)).map((o) => o.key)).drills.at(-1);
  return last === undefined ? undefined : Math.max(0, (now.getTime() - parseTimestamp(last).getTime()) / 3_600_000);
}
