import { setTimeout as sleep } from "node:timers/promises";
import { open, readFile, unlink } from "node:fs/promises";
import { JobError } from "./errors.ts";

/**
 * One backup at a time per lock file: created with O_EXCL and holding the owner's pid. A lock whose pid no
 * longer runs (a job killed with SIGKILL) is stale and taken over; a live one is `busy` (exit 7).
 */
export interface Lock {
  path: string;
  release(): Promise<void>;
}

function isRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

const held = new Set<string>();

/** Takes the lock or throws `busy`. */
export async function acquireLock(path: string): Promise<Lock> {
  if (held.has(path)) throw new JobError("busy", `lock '${path}': a backup is already running in this process`, { hint: "wait for it to finish; one backup runs at a time" });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(path, "wx");
      await handle.writeFile(`${process.pid}\n`);
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
    const pid = Number.parseInt(text.trim(), 10);
    if (text.trim() !== "" && isRunning(pid) && pid !== process.pid) {
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
