import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDemoDatabase } from "../../bench/livestore-db.ts";
import { runDemo, tableDigests } from "../../scripts/demo.ts";

// The `npm start` path, end to end, on a small database: the bundled Worker in Miniflare with a real
// local R2 persisted on disk, real SQLite files, the real backup and restore engines.
describe("the local demo (npm start)", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "r2b-start-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("runs the real LiveStore app: full backup, two incrementals, and LiveStore booted on each restore shows the todos it showed then", async () => {
    const s = await runDemo({ dataDir: join(dir, "data"), persistDir: join(dir, "mf"), events: 300 });
    expect(s.checks.map((c) => [c.name, c.ok])).toEqual(s.checks.map((c) => [c.name, true]));
    expect(s.checks).toHaveLength(4);
    expect(s.checks.filter((c) => /^LiveStore booted on restored\//.test(c.name))).toHaveLength(3);
    expect(s.ok).toBe(true);
    expect(s.backups.map((b) => b.kind)).toEqual(["full", "incremental", "incremental"]);
    expect(s.backups[0]?.promoted).toMatch(/^daily\/\d{4}-\d{2}-\d{2}$/);
    expect(s.restores.map((r) => r.chain)).toEqual([2, 1, 0]);
    expect(s.restores[1]?.restoresTo).toBe(s.backups[1]?.id);
    expect(s.bucket).toMatchObject({ full: 1, incremental: 2, daily: 1, incomplete: 0 });
  });

  it("a second run reuses the local R2 and lists the earlier backups too", async () => {
    const s = await runDemo({ dataDir: join(dir, "data"), persistDir: join(dir, "mf"), events: 300 });
    expect(s.ok).toBe(true);
    expect(s.bucket).toMatchObject({ full: 2, incremental: 4, daily: 1 });
    expect(s.sets.filter((x) => x.kind === "full")).toHaveLength(2);
    // The point-in-time restore of this run must not pick up the first run's chain.
    expect(s.restores[1]?.restoresTo).toBe(s.backups[1]?.id);
  });

  it("--db backs up the user's own database and restores an identical copy", async () => {
    const own = join(dir, "own.db");
    createDemoDatabase(own, 256 * 1024, 3);
    const s = await runDemo({ dataDir: join(dir, "data2"), persistDir: join(dir, "mf2"), db: own });
    expect(s.ok).toBe(true);
    expect(s.backups.map((b) => b.kind)).toEqual(["full"]);
    expect(tableDigests(s.paths.restored[0]!)).toEqual(tableDigests(own));
  });
});
