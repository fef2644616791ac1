import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseTimestamp } from "../../core/index.ts";
import { restore } from "../../job/restore/index.ts";
import { eventCount, runCli, writeLiveStoreDb } from "./backup-fixtures.ts";
import { useTestBucket } from "./bucket.ts";

/**
 * One clock (issue 13): a job machine whose clock is an hour behind or 30 days ahead takes its set ids and
 * capture times from the Worker, so a point-in-time restore at T holds exactly the rows committed before the
 * newest set read at or before T, and nothing committed after T.
 */
const t = useTestBucket("clock-");
const FAKE_CLOCK = fileURLToPath(new URL("./fixtures/fake-clock.mjs", import.meta.url));

/** `r2backup <args>` in a process whose wall clock is `offsetMs` off. */
function skewedCli(offsetMs: number, args: string[]) {
  const env = { R2_WORKER_URL: t.bucket.url, SERVER_BYPASS_TOKEN: t.bucket.token, FAKE_CLOCK_OFFSET_MS: String(offsetMs) };
  return runCli(args, env, { nodeArgs: ["--import", FAKE_CLOCK] }).done;
}

const HOUR = 3_600_000;

describe.each([
  ["an hour behind", -HOUR],
  ["30 days ahead", 30 * 24 * HOUR],
])("a job clock %s", (_label, offset) => {
  it("takes ids and capture times from the Worker: PITR answers stay exact and ages are never negative", async () => {
    const db = join(t.dir, "app.db");
    let events = 40;
    writeLiveStoreDb(db, { events });
    // Before each run: the rows committed so far and the real time; the app is quiet while a run reads.
    const points: { events: number; startedAt: number; finishedAt: number; id: string }[] = [];
    for (const kind of ["full", "incremental", "incremental"]) {
      const startedAt = Date.now();
      const r = await skewedCli(offset, ["run", "--db", db, "--source", "app", "--kind", kind, "--tmp-dir", join(t.dir, "tmp"), "--json"]);
      expect(r.code, r.stderr).toBe(0);
      const id = (JSON.parse(r.stdout) as { id: string }).id;
      points.push({ events, startedAt, finishedAt: Date.now(), id });
      // The id is the Worker's time (here: the real one), whatever this job's clock says.
      expect(Math.abs(parseTimestamp(id).getTime() - startedAt)).toBeLessThan(10_000);
      expect(r.stderr).toMatch(/this machine's clock is -?\d+ s off the Worker's/);
      await new Promise((resolve) => setTimeout(resolve, 20));
      writeLiveStoreDb(db, { from: events + 1, events: 7 });
      events += 7;
    }
    for (const [i, p] of points.entries()) {
      // Just before the run started, the set before it; just after it finished (before the next rows), this one.
      if (i > 0) {
        const to = join(t.dir, `before-${i}.db`);
        const r = await restore({ store: t.bucket.store, to, at: new Date(p.startedAt - 1) });
        expect(r.restoresTo).toBe(points[i - 1]!.id);
        expect(eventCount(to)).toBe(points[i - 1]!.events);
      }
      const to = join(t.dir, `after-${i}.db`);
      const r = await restore({ store: t.bucket.store, to, at: new Date(p.finishedAt) });
      expect(r.restoresTo).toBe(p.id);
      expect(eventCount(to)).toBe(p.events);
    }
    const status = await skewedCli(offset, ["status", "--json"]);
    const s = JSON.parse(status.stdout) as { full: { ageHours: number } | null; incremental: { ageHours: number } | null; warnings: string[] };
    expect(s.warnings.join("\n")).toMatch(/this machine's clock is -?\d+ s off the Worker's/);
    // Ages on the Worker's clock: neither negative nor a month old.
    expect(s.full!.ageHours).toBeGreaterThanOrEqual(0);
    expect(s.full!.ageHours).toBeLessThan(1);
    expect(s.incremental!.ageHours).toBeGreaterThanOrEqual(0);
    // The drill is recorded under the Worker's time too (a key from the future would be refused).
    const drill = await skewedCli(offset, ["verify", "--json"]);
    expect(drill.code, drill.stderr).toBe(0);
    const key = (JSON.parse(drill.stdout) as { key: string }).key;
    expect(Math.abs(parseTimestamp(key.slice("backups/drills/".length, -".json".length)).getTime() - Date.now())).toBeLessThan(60_000);
  });
});
