import type { Command } from "../config.ts";
import { agentCommand } from "./agent.ts";
import { chainCommand } from "./chain.ts";
import { listCommand } from "./list.ts";
import { restoreCommand } from "./restore.ts";
import { runCommand } from "./run.ts";
import { statusCommand } from "./status.ts";
import { triggerCommand } from "./trigger.ts";
import { verifyCommand } from "./verify.ts";

/**
 * The CLI's commands, by name: `main(argv)` dispatches here and `--help` lists them in this order.
 * One file per command in this folder.
 */
export const commands: Record<string, Command> = {
  run: runCommand,
  list: listCommand,
  status: statusCommand,
  agent: agentCommand,
  trigger: triggerCommand,
  restore: restoreCommand,
  verify: verifyCommand,
  chain: chainCommand,
};
