import { readdir, readFile, readlink, realpath, stat } from "node:fs/promises";
import { basename } from "node:path";

/**
 * Who has a database open. A restore that replaces a file an app still holds open loses the app's work: the
 * app goes on writing into the old file (and a `-wal` the restore removed), which nothing will ever read
 * again. `restore --force` refuses a target a process holds open, before it downloads and again right before
 * it replaces the file.
 */

/** A process that holds one of the paths open. */
export interface Holder {
  pid: number;
  /** Its program (the file name of argv[0]). */
  command: string;
  /** Which of the paths it holds. */
  path: string;
}

/**
 * The processes, this one included, that hold any of `paths` open, found through each process's open files in
 * `/proc/<pid>/fd` (Linux), matched by device and inode, so another path or mount of the same file counts, and
 * a hard link under another name (found by its inode number in `/proc/<pid>/fdinfo`, where the kernel shows it).
 * Paths that do not exist are skipped. Processes whose open files this user may not read are not seen (another
 * user's; in a container, also as root without CAP_SYS_PTRACE), nor those of another pid namespace; off Linux
 * nothing is.
 */
export async function processesHolding(paths: readonly string[]): Promise<Holder[]> {
  const wanted = new Map<string, string>();
  const names = new Set<string>();
  const inodes = new Set<string>();
  for (const path of paths) {
    const s = await stat(path).catch(() => undefined);
    if (!s?.isFile()) continue;
    wanted.set(`${s.dev}:${s.ino}`, path);
    names.add(basename(path));
    names.add(basename(await realpath(path).catch(() => path)));
    inodes.add(String(s.ino));
  }
  if (wanted.size === 0) return [];
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((n) => /^\d+$/.test(n));
  const holders: Holder[] = [];
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    // The link's text and the kernel's fdinfo first (neither touches the file, so a hung mount elsewhere cannot
    // stall this); only a file of the same name, or of the same inode number (a hard link under another name),
    // is looked at, by device and inode (another mount or path of it counts too).
    const links = await Promise.all(
      fds.map((fd) =>
        readlink(`/proc/${pid}/fd/${fd}`).then(
          async (to) => ({ fd, to, ino: to.startsWith("/") && !names.has(basename(to)) ? await inodeOf(pid, fd) : undefined }),
          () => undefined,
        ),
      ),
    );
    const held = new Set<string>();
    for (const l of links) {
      if (l === undefined || !l.to.startsWith("/") || !(names.has(basename(l.to)) || (l.ino !== undefined && inodes.has(l.ino)))) continue;
      const s = await stat(`/proc/${pid}/fd/${l.fd}`).catch(() => undefined);
      const path = s?.isFile() ? wanted.get(`${s.dev}:${s.ino}`) : undefined;
      if (path !== undefined) held.add(path);
    }
    if (held.size === 0) continue;
    // The program only (argv[0]): its arguments may carry a secret.
    const argv0 = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0")[0] ?? "";
    const command = basename(argv0) || "?";
    for (const path of held) holders.push({ pid: Number(pid), command, path });
  }
  return holders;
}

/** The inode number of a process's open file, from `/proc/<pid>/fdinfo` (undefined where the kernel does not show it). */
async function inodeOf(pid: string, fd: string): Promise<string | undefined> {
  const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, "utf8").catch(() => "");
  return /^ino:\s*(\d+)$/m.exec(info)?.[1];
}

/** "process 123 (node server.js) has 'app.db-wal' open", naming this process as such. */
export function describeHolders(holders: readonly Holder[]): string {
  const byPid = new Map<number, Holder[]>();
  for (const h of holders) byPid.set(h.pid, [...(byPid.get(h.pid) ?? []), h]);
  return [...byPid.values()]
    .map((hs) => {
      const who = hs[0]!.pid === process.pid ? `this process (${hs[0]!.pid})` : `process ${hs[0]!.pid} (${hs[0]!.command})`;
      return `${who} has ${hs.map((h) => `'${basename(h.path)}'`).join(", ")} open`;
    })
    .join("; ");
}
