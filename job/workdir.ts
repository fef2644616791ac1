import { existsSync, readFileSync, readlinkSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";

/**
 * A backup's work directory under the temp dir (its snapshots and the spooled output), and the sweep that removes
 * those of backups that are over. Its name says whose it is: `r2backup-work-<pid>-`, then on Linux
 * `s<start>-t<tid>-`, the process's start time (so a later process with the same pid, as after a container
 * restart with the temp dir on a persistent disk, sees the directory is not its own) and the thread's id (so the
 * directory of an app's worker thread terminated mid-backup is told from a backup running now).
 */

/** Who made a work directory. `start` and `tid` are undefined off Linux (and in names from before 0.3.0). */
export interface WorkDirOwner {
  pid: number;
  /** The process's start time, in clock ticks after boot (`/proc/<pid>/stat`, field 22). */
  start?: string;
  /** The OS id of the thread (`/proc/thread-self`). */
  tid?: number;
}

/** What the sweep asks of the system; a test passes its own. */
export interface OwnerProbe {
  /** This process, and the calling thread. */
  self: WorkDirOwner;
  processAlive(pid: number): boolean;
  /** A live process's start time; undefined when it cannot be read. */
  startOf(pid: number): string | undefined;
  threadAlive(pid: number, tid: number): boolean;
}

const NAME = /^r2backup-work-(\d+)-(?:s(\d+)-)?(?:t(\d+)-)?/;

/** The owner a work directory's name gives, or undefined for a name that is not a work directory's. */
export function parseWorkDirName(name: string): WorkDirOwner | undefined {
  const m = NAME.exec(name);
  if (!m) return undefined;
  return { pid: Number(m[1]), ...(m[2] !== undefined ? { start: m[2] } : {}), ...(m[3] !== undefined ? { tid: Number(m[3]) } : {}) };
}

/** The prefix of a new work directory's name (mkdtemp adds six random characters). */
export function workDirPrefix(owner: WorkDirOwner = systemProbe().self): string {
  return `r2backup-work-${owner.pid}-${owner.start === undefined ? "" : `s${owner.start}-`}${owner.tid === undefined ? "" : `t${owner.tid}-`}`;
}

/**
 * Whether the backup that made a work directory is over: its process is gone, or the pid now belongs to another
 * process (another start time), or it ran on a thread of this process that is gone. Anything else may be a
 * backup running now (in another process, or another one in this thread), and is kept.
 */
export function isStaleWorkDir(owner: WorkDirOwner, probe: OwnerProbe): boolean {
  const { self } = probe;
  if (owner.pid !== self.pid) {
    if (!probe.processAlive(owner.pid)) return true;
    const start = owner.start === undefined ? undefined : probe.startOf(owner.pid);
    return start !== undefined && start !== owner.start;
  }
  if (owner.start !== undefined && self.start !== undefined && owner.start !== self.start) return true;
  if (owner.tid !== undefined && self.tid !== undefined && owner.tid !== self.tid) return !probe.threadAlive(owner.pid, owner.tid);
  return false;
}

/** Removes the stale work directories under `tmpDir` (`isStaleWorkDir`); a directory it cannot remove stays. */
export async function removeStaleWorkDirs(tmpDir: string, probe: OwnerProbe = systemProbe()): Promise<void> {
  for (const name of await readdir(tmpDir).catch(() => [] as string[])) {
    const owner = parseWorkDirName(name);
    if (owner && isStaleWorkDir(owner, probe)) await rm(join(tmpDir, name), { recursive: true, force: true }).catch(() => {});
  }
}

/** Whether a process with this pid runs (one of another user's counts); never true for 0 or a non-pid. */
export function processRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A process's start time from /proc (Linux); undefined elsewhere or when it is gone. */
export function startOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // After "<pid> (<comm>) " the fields start at the 3rd; the start time is the 22nd.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** The calling thread's OS id (Linux: `/proc/thread-self` is `<pid>/task/<tid>`); undefined elsewhere. */
function threadId(): number | undefined {
  try {
    const m = /\/task\/(\d+)$/.exec(readlinkSync("/proc/thread-self"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The probe of this machine, for the calling thread. */
export function systemProbe(): OwnerProbe {
  const start = startOf(process.pid);
  const tid = threadId();
  return {
    self: { pid: process.pid, ...(start !== undefined ? { start } : {}), ...(tid !== undefined ? { tid } : {}) },
    processAlive: processRunning,
    startOf,
    threadAlive: (pid, tid) => existsSync(`/proc/${pid}/task/${tid}`),
  };
}
