import { main } from "./cli.ts";

/**
 * The CLI as a process (loaded by `bin.js`): the only module that exits. SIGINT/SIGTERM abort the signal
 * (the agent closes its server); a command that does not stop within 2 s is ended, which is safe: a set
 * without its manifest is never restored, and a restore replaces its target only by an atomic rename.
 */
const controller = new AbortController();
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    controller.abort();
    setTimeout(() => process.exit(130), 2000).unref();
  });
}
const code = await main(process.argv.slice(2), { signal: controller.signal });
process.exit(code);
