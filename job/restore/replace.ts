import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, link, lstat, mkdir, open, readdir, readlink, realpath, rename, rm, stat, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { JobError } from "../errors.ts";
import { processRunning } from "../workdir.ts";
import { describeHolders, processesHolding } from "./holders.ts";

/**
 * The file adapter of restore: temporary files beside the target, the refusal to overwrite by surprise,
 * and the atomic replace of reference §5 "Safe restore" (fsync the file, drop stale sidecars, rename,
 * fsync the directory). A restore that fails or is killed leaves the target as it was.
 */

/** The files SQLite pairs with a database; a stale one beside a new file corrupts it. */
export const SIDECARS = ["-wal", "-shm", "-journal"] as const;

const TEMP_RE = /^\.(.+)\.restore-(\d+)-[0-9a-f]+\.tmp(-wal|-shm|-journal)?$/;

/** A temporary path in the target's directory (so the final rename stays within one filesystem). */
export function tempPathFor(target: string): string {
  const abs = resolve(target);
  return join(dirname(abs), `.${basename(abs)}.restore-${process.pid}-${randomBytes(4).toString("hex")}.tmp`);
}

/**
 * Removes temporary files that an earlier restore of `target` left behind when it was killed (its process
 * is gone). A temp file of a restore still running is left alone. Returns the removed paths.
 */
export async function removeStaleTemps(target: string): Promise<string[]> {
  const abs = resolve(target);
  const dir = dirname(abs);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMP_RE.exec(name);
    if (!m || m[1] !== basename(abs) || processRunning(Number(m[2]))) continue;
    await rm(join(dir, name), { force: true, recursive: true }); // a documents restore's temp is a directory
    removed.push(join(dir, name));
  }
  return removed;
}

/** Removes a temporary database and any sidecar SQLite made for it. Never throws. */
export async function discardTemp(path: string): Promise<void> {
  for (const suffix of ["", ...SIDECARS]) await rm(`${path}${suffix}`, { force: true }).catch(() => {});
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** What sits at a target now: the file and each sidecar that exists. */
export async function existingAt(target: string): Promise<string[]> {
  const found: string[] = [];
  for (const suffix of ["", ...SIDECARS]) if (await exists(`${target}${suffix}`)) found.push(`${target}${suffix}`);
  return found;
}

/**
 * Refuses a target that exists (or has sidecar files) unless `force`, and a target whose directory is
 * missing or that is a directory. Called before anything is downloaded.
 */
export async function checkTarget(target: string, force: boolean): Promise<{ exists: boolean }> {
  const abs = resolve(target);
  const dir = dirname(abs);
  const dirStat = await stat(dir).catch(() => undefined);
  if (!dirStat?.isDirectory()) {
    const blocker = await fileInTheWay(dir);
    if (blocker !== undefined)
      throw new JobError("usage", `restore to '${target}': '${blocker}' is a file, not a directory`, { hint: "nothing was changed; give --to a path in a directory" });
    throw new JobError("usage", `restore to '${target}': the directory '${dir}' does not exist`, { hint: `create it first: mkdir -p ${dir}` });
  }
  const st = await stat(abs).catch(() => undefined);
  if (st?.isDirectory()) throw new JobError("usage", `restore to '${target}': it is a directory`, { hint: "give the path of the database file" });
  const found = await existingAt(abs);
  if (found.length > 0 && !force) {
    throw new JobError("targetExists", `restore to '${target}': ${found.map((f) => `'${basename(f)}'`).join(", ")} already exist${found.length === 1 ? "s" : ""}`, {
      hint: "nothing was changed; stop every process that uses it, then run again with --force to replace it",
    });
  }
  if (found.length > 0) await refuseHeld(target, found);
  return { exists: found.length > 0 };
}

/** Refuses to replace or remove files a process holds open (job/restore/holders.ts): its work would be lost. */
export async function refuseHeld(target: string, files: readonly string[]): Promise<void> {
  const holders = await processesHolding(files);
  if (holders.length === 0) return;
  throw new JobError("targetExists", `restore to '${target}': ${describeHolders(holders)}`, {
    hint: "nothing was changed; stop the app and every process that uses the database, then run the restore again (--force replaces only files no process holds open)",
  });
}

/**
 * The file a target names: a symbolic link is followed (to where it points, even when nothing is there yet), so
 * the database the app opens through the link is the one replaced, and the link stays. SQLite also names a
 * database's `-wal` and `-shm` after the file a link points to.
 */
export async function followLinks(target: string): Promise<string> {
  let path = resolve(target);
  for (let hops = 0; hops < 40; hops++) {
    const s = await lstat(path).catch(() => undefined);
    if (!s?.isSymbolicLink()) return path;
    // A relative link is read from the directory it is in, as the kernel does (`..` after a linked directory).
    path = resolve(await realpath(dirname(path)), await readlink(path));
  }
  throw new JobError("usage", `restore to '${target}': too many symbolic links`, { hint: "give the path of the database file" });
}

/** The first existing path at or above `path` that is not a directory, if any (why `mkdir -p` would fail). */
async function fileInTheWay(path: string): Promise<string | undefined> {
  for (let p = resolve(path); ; p = dirname(p)) {
    const s = await stat(p).catch(() => undefined);
    if (s) return s.isDirectory() ? undefined : p;
    if (dirname(p) === p) return undefined;
  }
}

/** `mkdir -p` for a restore's directories; a file in the way is a usage error naming it (`what` names the flag). */
export async function makeDirectory(dir: string, what: string): Promise<void> {
  const blocker = await fileInTheWay(dir);
  if (blocker !== undefined) {
    throw new JobError("usage", `restore to '${dir}': '${blocker}' is a file, not a directory`, { hint: `nothing was changed; give ${what} a directory path` });
  }
  await mkdir(dir, { recursive: true });
}

/** fsync of a file or directory: a rename is durable only once its directory is synced. */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function appeared(target: string, found: string[]): JobError {
  return new JobError("targetExists", `restore to '${target}': ${found.map((f) => `'${basename(f)}'`).join(", ")} appeared while the restore ran`, {
    hint: "nothing was changed; another process writes there: stop it, then run again (with --force to replace it)",
  });
}

/**
 * Moves a checked temporary database over the target: fsync it, remove the target's stale `-wal`, `-shm`
 * and `-journal` (pairing them with the new file would corrupt it), rename, fsync the directory.
 * Without `force` the target is checked again at this moment, atomically: a hard link fails when the name
 * is taken (rename would replace it), so a target that appeared while the restore ran is left untouched.
 * Where links are not supported the check and the rename are separate steps. The caller has closed every
 * connection to the temporary file.
 */
export async function replaceAtomically(temp: string, target: string, options: { force?: boolean } = {}): Promise<void> {
  const abs = resolve(target);
  for (const suffix of SIDECARS) {
    if (await exists(`${temp}${suffix}`)) {
      throw new JobError("failed", `replace '${target}': the temporary file still has '${basename(temp)}${suffix}'`, { hint: "a connection to it was left open; this is a bug" });
    }
  }
  await fsyncPath(temp);
  if (!options.force) {
    const found = await existingAt(abs);
    if (found.length > 0) throw appeared(target, found);
    try {
      await link(temp, abs);
      await unlink(temp);
      await fsyncPath(dirname(abs));
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EEXIST") throw appeared(target, [abs]);
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EXDEV" && code !== "EMLINK") throw e;
    }
  }
  // A process may have opened the target since the restore started: checked again at the last moment.
  await refuseHeld(target, await existingAt(abs));
  for (const suffix of SIDECARS) await rm(`${abs}${suffix}`, { force: true });
  await rename(temp, abs);
  await fsyncPath(dirname(abs));
}
