import { readdir, readFile, stat } from "node:fs/promises";
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
  /** Its command line, shortened. */
  command: string;
  /** Which of the paths it holds. */
  path: string;
}

const MAX_COMMAND_CHARS = 80;

/**
 * The processes, this one included, that hold any of `paths` open, found through each process's open files in
 * `/proc/<pid>/fd` (Linux), matched by device and inode, so another path or mount of the same file counts.
 * Paths that do not exist are skipped. Processes whose files this user may not read (another user's, unless
 * run as root) are not seen; off Linux nothing is.
 */
export async function processesHolding(paths: readonly string[]): Promise<Holder[]> {
  const wanted = new Map<string, string>();
  for (const path of paths) {
    const s = await stat(path).catch(() => undefined);
    if (s?.isFile()) wanted.set(`${s.dev}:${s.ino}`, path);
  }
  if (wanted.size === 0) return [];
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((n) => /^\d+$/.test(n));
  const holders: Holder[] = [];
  for (const name of pids) {
    const fds = await readdir(`/proc/${name}/fd`).catch(() => [] as string[]);
    const held = new Set<string>();
    const stats = await Promise.all(fds.map((fd) => stat(`/proc/${name}/fd/${fd}`).catch(() => undefined)));
    for (const s of stats) {
      const path = s?.isFile() ? wanted.get(`${s.dev}:${s.ino}`) : undefined;
      if (path !== undefined) held.add(path);
    }
    if (held.size === 0) continue;
    const command = await commandOf(name);
    for (const path of held) holders.push({ pid: Number(name), command, path });
  }
  return holders;
}

async function commandOf(pid: string): Promise<string> {
  const raw = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  const command = raw.split("\0").filter(Boolean).join(" ") || "?";
  return command.length > MAX_COMMAND_CHARS ? `${command.slice(0, MAX_COMMAND_CHARS - 3)}...` : command;
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
