import { expect, test } from "vitest";
import { catalogFromKeys, missingFromReplica, setPrefix } from "../../core/index.ts";

/**
 * The order the replica copy takes sets in. Its chain index lists the chain up to the newest set the replica
 * holds, so what a copy stopped by its budget holds must be a prefix of the chain in time: an older incremental
 * must never wait behind a newer full.
 */
const set = (kind: "full" | "incremental", id: string, ...files: string[]) => [...files, "metadata.json"].map((f) => `backups/${kind}/${id}/${f}`);

test("missing sets come oldest first across fulls and incrementals, then the daily copies; incomplete and present ones are left out", () => {
  const primary = catalogFromKeys([
    ...set("full", "20260101T000000Z", "app.db.zst"),
    ...set("incremental", "20260101T060000Z", "changes.ndjson.zst"),
    ...set("full", "20260101T120000Z", "app.db.zst"),
    ...set("incremental", "20260101T180000Z", "changes.ndjson.zst"),
    ...set("full", "20260102T000000Z", "app.db.zst"),
    "backups/full/20260102T060000Z/app.db.zst", // no manifest yet
    "backups/daily/2026-01-01/app.db.zst",
    "backups/daily/2026-01-01/metadata.json",
  ]);
  const replica = catalogFromKeys(set("full", "20260101T000000Z", "app.db.zst"));
  expect(missingFromReplica(primary, replica).map(setPrefix)).toEqual([
    "backups/incremental/20260101T060000Z/",
    "backups/full/20260101T120000Z/",
    "backups/incremental/20260101T180000Z/",
    "backups/full/20260102T000000Z/",
    "backups/daily/2026-01-01/",
  ]);
});
