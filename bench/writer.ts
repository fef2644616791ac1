import { DatabaseSync } from "node:sqlite";

/**
 * The app's writer beside a backup (issue 16): `node bench/writer.ts <db> [everyMs=10] [padBytes=200]` commits one
 * row of about `padBytes` every `everyMs` into `bench_writer` (created if missing) through its own connection (30 s busy timeout, as an app
 * would wait; synchronous=NORMAL), prints `ready` after its first commit, and on SIGTERM prints one JSON line with the latency of
 * every commit (ms, the INSERT's own duration), when it started (`at`, epoch ms) and how late against its schedule.
 * Used by `npm run bench` (p99 during a full backup), bench/wal-growth.ts (a WAL fed 4 MB/s) and by the tests (a real
 * concurrent writer).
 */
const [path, every = "10", padBytes = "200"] = process.argv.slice(2);
if (!path) {
  process.stderr.write("usage: node bench/writer.ts <db> [everyMs] [padBytes]\n");
  process.exit(2);
}
const everyMs = Number(every);
const db = new DatabaseSync(path, { timeout: 30_000 });
// synchronous=NORMAL, as WAL apps commonly run (LiveStore does no fsync at all): the latency is then the locks'
// and SQLite's, not the disk's fsync, which the bench machine shares with the local R2.
db.exec("PRAGMA synchronous = NORMAL");
db.exec("CREATE TABLE IF NOT EXISTS bench_writer (id INTEGER PRIMARY KEY, at REAL NOT NULL, pad TEXT NOT NULL)");
const insert = db.prepare("INSERT INTO bench_writer (at, pad) VALUES (?, ?)");
const pad = "w".repeat(Number(padBytes));
const latencies: number[] = [];
const late: number[] = [];
const at: number[] = [];
let stopping = false;
process.on("SIGTERM", () => {
  stopping = true;
});
const start = performance.now();
for (let k = 0; !stopping; k++) {
  const due = start + k * everyMs;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  else await new Promise((r) => setImmediate(r));
  if (stopping) break;
  const t = performance.now();
  at.push(Date.now());
  insert.run(Date.now(), pad);
  const done = performance.now();
  latencies.push(done - t);
  late.push(Math.max(0, t - due));
  if (k === 0) process.stdout.write("ready\n");
}
db.close();
process.stdout.write(`${JSON.stringify({ commits: latencies.length, latencies: latencies.map((x) => Math.round(x * 100) / 100), late: late.map((x) => Math.round(x)), at })}\n`);
