import { spawn } from "node:child_process";
import { once } from "node:events";
import { copyFile, mkdir, rm, stat } from "node:fs/promises";
import { connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startLocalWorker } from "../worker/local.ts";
import { buildInstalled, CLI_BIN } from "./installed.ts";
import { BENCH_TMP, cachedDemoDatabase } from "./livestore-db.ts";
import { nodeFlagsOf } from "./measure.ts";

/**
 * How far an app's WAL grows during a full backup over a slow link. A WAL database is pinned while it is
 * compressed (docs/design.md, "Full backup cost"), and no checkpoint can reset the app's log meanwhile. The
 * app's writer (bench/writer.ts) commits a 20 KB row every 5 ms (4 MB/s; SQLite checkpoints at 1000 pages,
 * ~4 MiB, by default). `r2backup run --kind full` copies the 100 MiB benchmark database to the local Worker through a
 * TCP proxy that passes `RATE` MB/s (default 2). Reported per run: the backup's wall time and the log's
 * largest size while it ran.
 *
 *   npm exec -- node bench/wal-growth.ts                       # this checkout (built to dist/ first)
 *   BINS=/old/dist/job/bin.js,dist/job/bin.js npm exec -- node bench/wal-growth.ts   # builds side by side
 *
 * Not part of `npm run bench`: a throttled link makes it a minute long, and its result is one number per build.
 */
const RATE = Number(process.env.RATE ?? 2) * 1e6;
const ROUNDS = Number(process.env.ROUNDS ?? 2);
if (!process.env.BINS) buildInstalled();
const BINS = (process.env.BINS ?? CLI_BIN).split(",");
const source = await cachedDemoDatabase(100 * 1024 * 1024);
const dir = join(BENCH_TMP, "wal-growth");
await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
const worker = await startLocalWorker({ persistDir: join(dir, "worker") });
const upstream = new URL(worker.url);

// Passes RATE bytes per second from the job to the Worker (a tenth of it each 100 ms), answers at full speed.
const proxy = createServer((client: Socket) => {
  const server = connect(Number(upstream.port), upstream.hostname);
  let budget = RATE / 10;
  const refill = setInterval(() => {
    budget = RATE / 10;
    client.resume();
  }, 100);
  client.on("data", (data) => {
    server.write(data);
    budget -= data.length;
    if (budget <= 0) client.pause();
  });
  server.pipe(client);
  const end = () => {
    clearInterval(refill);
    client.destroy();
    server.destroy();
  };
  client.on("close", end).on("error", end);
  server.on("close", end).on("error", end);
});
proxy.listen(0, "127.0.0.1");
await once(proxy, "listening");
const url = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;

const WRITER = fileURLToPath(new URL("./writer.ts", import.meta.url));

try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const bin of BINS) {
      const db = join(dir, "app.db");
      for (const f of [db, `${db}-wal`, `${db}-shm`]) await rm(f, { force: true });
      await copyFile(source, db);
      const writer = spawn(process.execPath, [WRITER, db, "5", "20000"], { stdio: ["ignore", "pipe", "inherit"] });
      await new Promise<void>((resolve) => writer.stdout!.once("data", () => resolve())); // "ready": its first commit
      writer.stdout!.resume(); // its report at exit goes nowhere
      let largest = 0;
      const sampler = setInterval(() => {
        stat(`${db}-wal`).then(
          (s) => (largest = Math.max(largest, s.size)),
          () => {},
        );
      }, 20);
      const started = performance.now();
      const env = { ...process.env, R2_WORKER_URL: url, SERVER_BYPASS_TOKEN: worker.bindings.SERVER_BYPASS_TOKEN! };
      const args = [...nodeFlagsOf(bin), bin, "run", "--db", db, "--source", "app", "--kind", "full", "--tmp-dir", join(dir, "tmp"), "--no-promote", "--json"];
      const job = spawn(process.execPath, args, { env, stdio: "ignore" });
      const [code] = (await once(job, "exit")) as [number | null];
      const seconds = (performance.now() - started) / 1000;
      clearInterval(sampler);
      writer.kill();
      await once(writer, "exit");
      console.log(`${bin}: exit ${code}, backup ${seconds.toFixed(1)} s, the app's WAL at most ${(largest / 1024 / 1024).toFixed(1)} MiB`);
    }
  }
} finally {
  proxy.close();
  await worker.stop();
}
