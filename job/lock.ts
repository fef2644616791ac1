import { setTimeout as sleep } from "node:timers/promises";
import { open, readFile, unlink } from "node:fs/promises";
import { JobError } from "./errors.ts";
import { processRunning, startOf } from "./workdir.ts";

/**
 * One backup at a time per lock file: created with O_EXCL and holding the owner's pid and, on Linux, its start
 * time. A lock whose owner no longer runs (a job killed with SIGKILL) is stale and taken over; a live one is
 * `busy` (exit 7). A pid that runs but started at another time is another process that got the pid again (a
 * restarted container numbers its processes from 1 again; with --tmp-dir on a persistent disk the lock stays):
 * stale too.
 */
export interface Lock {
  path: string;
  release(): Promise<void>;
}

/** The lock's owner runs: its pid runs, is not this process, and (when both are known) started when the lock says. */
function isOwnerAlive(pid: number, start: string | undefined): boolean {
  if (!processRunning(pid) || pid === process.pid) return false;
  const now = start === undefined ? undefined : startOf(pid);
  return start === undefined || now === undefined || now === start;
}

const held = new Set<string>();

/** Takes the lock or throws `busy`. */
export async function acquireLock(path: string): Promise<Lock> {
  if (held.has(path)) throw new JobError("busy", `lock '${path}': a backup is already running in this process`, { hint: "wait for it to finish; one backup runs at a time" });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(path, "wx");
      const start = startOf(process.pid);
      await handle.writeFile(start === undefined ? `${process.pid}\n` : `${process.pid} ${start}\n`);
      await handle.close();
      held.add(path);
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
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const text = await readFile(path, "utf8").catch(() => "");
    const [pidText = "", start] = text.trim().split(/\s+/);
    const pid = Number.parseInt(pidText, 10);
    if (text.trim() !== "" && isOwnerAlive(pid, start)) {
      throw new JobError("busy", `lock '${path}': a backup is already running (pid ${pid})`, { hint: "wait for it to finish; one backup runs at a time" });
    }
    if (text.trim() === "" && attempt === 0) {
      // The owner may be between creating and writing the file.
      await sleep(200);
      continue;
    }
    // Stale: its owner is gone. Remove and race for it again (O_EXCL decides the winner).
    await unlink(path).catch(() => {});
  }
  throw new JobError("busy", `lock '${path}': could not take the lock`, { hint: "another backup is starting; try again" });
}
