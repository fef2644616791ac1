import { main } from "./cli.ts";
import { createLogger } from "./log.ts";

/**
 * The CLI as a process (loaded by `bin.js`): the only module that exits. SIGINT/SIGTERM say what is being
 * stopped, then abort the signal: the store fails every request at once, so a backup or restore unwinds
 * through its own cleanup (temporary files removed, an upload left without its manifest, the agent's server
 * closed). The process exits 130 (SIGINT) or 143 (SIGTERM), or 0 when the command finished cleanly all the
 * same (the agent stopping between backups); a command that has not stopped within 2 s is
 * ended, which is still safe: a set without its manifest is never restored, a restore replaces its target
 * only by an atomic rename, and the next restore removes a killed one's temporary file.
 */
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;
const argv = process.argv.slice(2);
const controller = new AbortController();
let stopping: number | undefined;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (stopping !== undefined) return;
    stopping = SIGNAL_EXIT[sig];
    const what = argv[0] && !argv[0].startsWith("-") ? `'${argv[0]}'` : "the command";
    createLogger(process.stderr).warn(`${sig}: stopping ${what}; removing its temporary files (at most 2 s)`, { signal: sig });
    controller.abort(new DOMException(`stopped by ${sig}`, "AbortError"));
    setTimeout(() => process.exit(stopping), 2000).unref();
  });
}
const code = await main(argv, { signal: controller.signal });
// A command that still finished cleanly says so (the agent's graceful stop, a backup already complete).
process.exit(code === 0 ? 0 : (stopping ?? code));
