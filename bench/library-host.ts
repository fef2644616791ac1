import { readFileSync, writeFileSync } from "node:fs";
import { backup, HttpStore } from "../job/index.ts";

/**
 * The in-process library case (issue 16): a host process that imports the package, settles, then runs one
 * full backup of `<db>` and prints its RSS before (after resetting the kernel's high-water mark through
 * /proc/self/clear_refs) and the high-water mark after: what the backup added to the host.
 * `node bench/library-host.ts <db> <tmpDir>` with R2_WORKER_URL and SERVER_BYPASS_TOKEN set.
 */
const [db, tmpDir] = process.argv.slice(2);
const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? 0);
const store = new HttpStore({ url: process.env.R2_WORKER_URL!, token: process.env.SERVER_BYPASS_TOKEN! });
globalThis.gc?.();
await new Promise((r) => setTimeout(r, 200));
writeFileSync("/proc/self/clear_refs", "5");
const before = kib("VmRSS");
const t = performance.now();
const r = await backup({ store, databases: [{ path: db!, source: "host" }], kind: "full", tmpDir: tmpDir!, lockFile: false, promote: false });
const ms = performance.now() - t;
const hwm = kib("VmHWM");
process.stdout.write(`${JSON.stringify({ id: r.id, ms: Math.round(ms), rssBeforeMiB: before / 1024, peakMiB: hwm / 1024, addedMiB: (hwm - before) / 1024 })}\n`);
