import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isStaleWorkDir, parseWorkDirName, removeStaleWorkDirs, systemProbe, workDirPrefix, type OwnerProbe, type WorkDirOwner } from "../../job/workdir.ts";

/**
 * Whose a work directory is, and when the sweep before a backup removes it (job/workdir.ts): a process that is
 * gone, a pid now held by another process (a container restarted with its temp dir on a persistent disk gives
 * the app the same pid again), a thread of this process that is gone. Everything else may be running now.
 */
const self: WorkDirOwner = { pid: 7, start: "5000", tid: 7 };
function probe(world: { alive?: number[]; starts?: Record<number, string>; threads?: number[] } = {}): OwnerProbe {
  return {
    self,
    processAlive: (pid) => pid === self.pid || (world.alive ?? []).includes(pid),
    startOf: (pid) => (pid === self.pid ? self.start : world.starts?.[pid]),
    threadAlive: (_pid, tid) => tid === self.tid || (world.threads ?? []).includes(tid),
  };
}

describe("work directories", () => {
  it.each<[string, WorkDirOwner, Parameters<typeof probe>[0], boolean]>([
    ["another process, gone", { pid: 9, start: "100", tid: 9 }, {}, true],
    ["another process, running (same start time)", { pid: 9, start: "100", tid: 9 }, { alive: [9], starts: { 9: "100" } }, false],
    ["another process now holds that pid (another start time)", { pid: 9, start: "100", tid: 9 }, { alive: [9], starts: { 9: "300" } }, true],
    ["another process, running, name without a start time (before 0.3.0, or not Linux)", { pid: 9 }, { alive: [9] }, false],
    ["this pid, an earlier process (a restarted container)", { pid: 7, start: "1200", tid: 7 }, {}, true],
    ["this process, this thread (another backup running here now)", { pid: 7, start: "5000", tid: 7 }, {}, false],
    ["this process, another thread that runs", { pid: 7, start: "5000", tid: 12 }, { threads: [12] }, false],
    ["this process, a thread that is gone (terminated mid-backup)", { pid: 7, start: "5000", tid: 12 }, {}, true],
    ["this pid, name without start or thread (before 0.3.0, or not Linux)", { pid: 7 }, {}, false],
  ])("%s: stale %s", (_what, owner, world, stale) => {
    expect(isStaleWorkDir(owner, probe(world))).toBe(stale);
  });

  it("names carry the owner and read back; other names are not work directories", () => {
    expect(workDirPrefix({ pid: 7, start: "5000", tid: 12 })).toBe("r2backup-work-7-s5000-t12-");
    expect(workDirPrefix({ pid: 7 })).toBe("r2backup-work-7-");
    expect(parseWorkDirName("r2backup-work-7-s5000-t12-Ab3xYz")).toEqual({ pid: 7, start: "5000", tid: 12 });
    expect(parseWorkDirName("r2backup-work-15924-ff5ta0")).toEqual({ pid: 15924 });
    expect(parseWorkDirName("r2backup-drill-abc")).toBeUndefined();
    expect(parseWorkDirName("app.db")).toBeUndefined();
    // On this machine (Linux) a new directory names this process's start time and the calling thread.
    expect(parseWorkDirName(`${workDirPrefix()}xxxxxx`)).toEqual(systemProbe().self);
    expect(systemProbe().self.start).toMatch(/^\d+$/);
  });

  it("the sweep removes what an earlier process with this pid left, keeps this process's own and anything else", async () => {
    const tmp = await mkdtemp(join(tmpdir(), "r2b-workdir-"));
    try {
      const { self: me } = systemProbe();
      const earlier = `r2backup-work-${process.pid}-s1-t${me.tid}-aaaaaa`;
      const mine = `${workDirPrefix()}bbbbbb`;
      for (const d of [earlier, mine]) {
        await mkdir(join(tmp, d));
        await writeFile(join(tmp, d, "app.db.zst"), "spooled");
      }
      await writeFile(join(tmp, "unrelated.txt"), "x");
      await removeStaleWorkDirs(tmp);
      expect((await readdir(tmp)).sort()).toEqual([mine, "unrelated.txt"].sort());
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});
