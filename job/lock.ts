import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { link, open, rename, unlink, writeFile } from "node:fs/promises";
import { JobError } from "./errors.ts";
import { processRunning, startOf } from "./workdir.ts";

/**
 * One backup at a time per lock file, holding the owner's pid and, on Linux, its start time. The file is
 * written whole under a temporary name and then linked into place, which fails when a lock is there: a lock
 * is never seen half-written (except an older version's, or one on a file system without hard links). A lock
 * whose owner no longer runs (a job killed with SIGKILL) is stale and taken over; a live one is `busy` (exit
 * 7). A pid that runs but started at another time is another process that got the pid again (a restarted
 * container numbers its processes from 1 again; with --tmp-dir on a persistent disk the lock stays): stale too.
 *
 * Taking over is safe against a second run that found the same stale lock: the stale file is moved aside,
 * not deleted, and kept out only if it is the very file that was read (same inode, same text). If the other
 * run has meanwhile replaced it with its own lock, that lock is moved back and this run is `busy`.
 */
export interface Lock {
  path: string;
  release(): Promise<void>;
}

export interface LockOptions {
  /** Runs between reading a stale lock and moving it aside (tests: another run takes the lock over meanwhile). */
  beforeTakeover?: () => Promise<void>;
}

/** The lock's owner runs: its pid runs, is not this process, and (when both are known) started when the lock says. */
function isOwnerAlive(pid: number, start: string | undefined): boolean {
  if (!processRunning(pid) || pid === process.pid) return false;
  const now = start === undefined ? undefined : startOf(pid);
  return start === undefined || now === undefined || now === start;
}

const held = new Set<string>();

const busy = (path: string, why: string) => new JobError("busy", `lock '${path}': ${why}`, { hint: "wait for it to finish; one backup runs at a time" });

/** Creates the lock with this process's pid in it, whole; false when a lock is already there. */
async function create(path: string): Promise<boolean> {
  const start = startOf(process.pid);
  const text = start === undefined ? `${process.pid}\n` : `${process.pid} ${start}\n`;
  const temp = `${path}.${process.pid}.${randomUUID()}.new`;
  await writeFile(temp, text, { flag: "wx" });
  try {
    await link(temp, path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") throw e;
  } finally {
    await unlink(temp).catch(() => {});
  }
  // A file system without hard links: created empty, then written (an older version's way).
  try {
    await writeFile(path, text, { flag: "wx" });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  }
}

/** The lock file's text and inode, or undefined when there is none. */
async function read(path: string): Promise<{ text: string; ino: number } | undefined> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(path, "r");
    const { ino } = await handle.stat();
    return { text: await handle.readFile("utf8"), ino };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  } finally {
    await handle?.close().catch(() => {});
  }
}

/**
 * Removes the stale lock `seen` from `path`, unless another run has replaced it since it was read: then that
 * lock is put back and false is returned.
 */
async function removeStale(path: string, seen: { text: string; ino: number }): Promise<boolean> {
  const aside = `${path}.${process.pid}.${randomUUID()}.stale`;
  try {
    await rename(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return true; // removed by another run: race for it again
    throw e;
  }
  const moved = await read(aside);
  if (moved && moved.ino === seen.ino && moved.text === seen.text) {
    await unlink(aside).catch(() => {});
    return true;
  }
  // Another run took the stale lock over between the read and the move: its lock goes back where it was. (A
  // third run that found no lock in the few calls between the two moves took it too: not covered.)
  await rename(aside, path);
  return false;
}

/** Takes the lock or throws `busy`. */
export async function acquireLock(path: string, options: LockOptions = {}): Promise<Lock> {
  if (held.has(path)) throw busy(path, "a backup is already running in this process");
  // Taken for this process before the first await: a second call in this process meanwhile is busy, instead of
  // finding its own pid in the file, which reads as stale, and taking the lock over.
  held.add(path);
  try {
    return await take(path, options);
  } catch (e) {
    held.delete(path);
    throw e;
  }
}

async function take(path: string, options: LockOptions): Promise<Lock> {
  for (let attempt = 0; attempt < 3; attempt++) {
    if (await create(path)) {
      let released = false;
      return {
        path,
        async release() {
          if (released) return;
          released = true;
          held.delete(path);
          await unlink(path).catch(() => {});
        },
      };
    }
    const seen = await read(path);
    if (!seen) continue; // released meanwhile
    const [pidText = "", start] = seen.text.trim().split(/\s+/);
    const pid = Number.parseInt(pidText, 10);
    if (seen.text.trim() !== "" && isOwnerAlive(pid, start)) throw busy(path, `a backup is already running (pid ${pid})`);
    if (seen.text.trim() === "" && attempt === 0) {
      // Its owner may be between creating and writing the file (an older version, or no hard links here).
      await sleep(200);
      continue;
    }
    // Stale: its owner is gone.
    await options.beforeTakeover?.();
    if (!(await removeStale(path, seen))) throw busy(path, "another backup took over the stale lock first");
  }
  throw new JobError("busy", `lock '${path}': could not take the lock`, { hint: "another backup is starting; try again" });
}
