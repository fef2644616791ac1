import { readFileSync, writeFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { LIBRARY } from "./installed.ts";

// The package as an app imports it (dist/, built by the bench first); the sources' types are the same.
const { backup, HttpStore } = (await import(LIBRARY)) as typeof import("../job/index.ts");

/**
 * The in-process library case (issue 16): a host process that imports the package, makes one request through
 * its store, settles, then runs two full backups of `<db>` and prints its RSS before them (after resetting the
 * kernel's high-water mark through /proc/self/clear_refs) and the high-water mark after: what backing up adds.
 * Meanwhile a 10 ms timer stands for the app's own work on its event loop: how late it fires is how long the
 * app's requests wait for the backup (the check is one synchronous SQLite call). With `--thread` each backup
 * runs on a worker thread of the host (bench/library-thread.mjs), as the README shows.
 * `node bench/library-host.ts <db> <tmpDir> [--thread]` with R2_WORKER_URL and SERVER_BYPASS_TOKEN set.
 */
const [db, tmpDir, mode] = process.argv.slice(2);
const onThread = mode === "--thread";
const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? 0);
const store = new HttpStore({ url: process.env.R2_WORKER_URL!, token: process.env.SERVER_BYPASS_TOKEN! });
// A host that talks HTTP already has Node's fetch loaded: one request through the store before the baseline.
await store.list("backups/manifests/");
globalThis.gc?.();
await new Promise((r) => setTimeout(r, 200));
writeFileSync("/proc/self/clear_refs", "5");
const before = kib("VmRSS");
// Two backups, as a host that backs up every few hours runs them: the peak over both against the RSS before the
// first (what the first leaves allocated counts against the second).
const backupOnThread = () =>
  new Promise<{ id: string }>((resolve, reject) => {
    const w = new Worker(new URL("./library-thread.mjs", import.meta.url), { workerData: { library: pathToFileURL(LIBRARY).href, db, tmpDir } });
    w.once("message", resolve);
    w.once("error", reject);
  });
let lateMs = 0;
let expected = performance.now() + 10;
const timer = setInterval(() => {
  const now = performance.now();
  lateMs = Math.max(lateMs, now - expected);
  expected = now + 10;
}, 10);
const delay = monitorEventLoopDelay({ resolution: 5 });
delay.enable();
const runs: { id: string; ms: number; peakMiB: number }[] = [];
for (let i = 0; i < 2; i++) {
  const t = performance.now();
  const r = onThread ? await backupOnThread() : await backup({ store, databases: [{ path: db!, source: "host" }], kind: "full", tmpDir: tmpDir!, lockFile: false, promote: false });
  runs.push({ id: r.id, ms: Math.round(performance.now() - t), peakMiB: kib("VmHWM") / 1024 });
}
delay.disable();
clearInterval(timer);
const hwm = kib("VmHWM");
const loop = { timerLateMaxMs: Math.round(lateMs), loopDelayP99Ms: Math.round(delay.percentile(99) / 1e5) / 10, loopDelayMaxMs: Math.round(delay.max / 1e6) };
process.stdout.write(`${JSON.stringify({ ms: runs[0]!.ms, rssBeforeMiB: before / 1024, peakMiB: hwm / 1024, addedMiB: (hwm - before) / 1024, runs, ...loop })}\n`);
