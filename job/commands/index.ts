import type { Command } from "../config.ts";

/** A command as `--help` lists it; its module is loaded only when it runs. */
export interface CommandEntry {
  summary: string;
  load(): Promise<Command>;
}

/**
 * The CLI's commands, by name: `main(argv)` dispatches here and `--help` lists them in this order.
 * One file per command in this folder, imported when that command runs: `--help` loads none of them, and a
 * command none of the others' (`list` never loads the backup's or the restore's modules; issue 16).
 */
export const commands: Record<string, CommandEntry> = {
  run: { summary: "take a backup now (full, incremental or auto) and upload it through the Worker", load: async () => (await import("./run.ts")).runCommand },
  list: { summary: "list backup sets (full, incremental, daily) and whether each is complete", load: async () => (await import("./list.ts")).listCommand },
  status: { summary: "show the newest backups and their ages; exit 1 when the newest full is too old", load: async () => (await import("./status.ts")).statusCommand },
  agent: { summary: "serve POST /backup (token BACKUP_AGENT_TOKEN) inside the service that owns the database", load: async () => (await import("./agent.ts")).agentCommand },
  trigger: { summary: "ask an agent to take a backup, stream its progress, exit 0 only when it completed", load: async () => (await import("./trigger.ts")).triggerCommand },
  restore: { summary: "restore a database at a point in time (refuses an existing target without --force)", load: async () => (await import("./restore.ts")).restoreCommand },
  verify: { summary: "the restore drill: restore into a temporary directory, check, record under backups/drills/", load: async () => (await import("./verify.ts")).verifyCommand },
  chain: { summary: "show the backup chain's head; --rebuild rebuilds its index from the manifests (admin token)", load: async () => (await import("./chain.ts")).chainCommand },
};
