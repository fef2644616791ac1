import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { appendDemoEvents } from "../../bench/livestore-db.ts";
import { restoreCommand } from "../../job/commands/restore.ts";
import { exitCodeOf } from "../../job/errors.ts";
import { createLogger } from "../../job/log.ts";
import { useTestBucket } from "./bucket.ts";
import { dumpDatabase, fileSha256, uploadFull, uploadIncremental } from "./restore-fixtures.ts";

/** `r2backup restore` as a command: flags, output, and the exit code of each refusal. */
const t = useTestBucket("restore-cli-");

/** Runs the command like `main` does: a thrown error becomes its exit code. */
async function run(args: string[]) {
  let out = "";
  let err = "";
  const env = { R2_WORKER_URL: t.bucket.worker.url, SERVER_BYPASS_TOKEN: t.bucket.worker.bindings.SERVER_BYPASS_TOKEN! };
  const io = { stdout: { write: (t: string) => ((out += t), true) }, stderr: { write: (t: string) => ((err += t), true) }, env };
  let code: number;
  let message = "";
  try {
    code = await restoreCommand.run(args, { io, env, logger: createLogger(io.stderr, { json: true }) });
  } catch (e) {
    code = exitCodeOf(e);
    message = (e as Error).message;
  }
  return { code, out, err, message };
}

async function seed() {
  const src = join(t.dir, "app.src.db");
  appendDemoEvents(src, 80, 1);
  const full = await uploadFull(t.bucket.store, "20260105T000000Z", [{ source: "app", path: src }]);
  appendDemoEvents(src, 15, 2);
  await uploadIncremental(t.bucket.store, "20260105T010000Z", full, [{ source: "app", path: src }]);
  return src;
}

describe("r2backup restore", () => {
  it("--dry-run prints the plan, exits 0 and writes nothing", async () => {
    await seed();
    const to = join(t.dir, "out.db");
    const r = await run(["--to", to, "--dry-run"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("plan at latest: restores to 20260105T010000Z");
    expect(r.out).toContain("full         20260105T000000Z");
    expect(r.out).toContain("incremental  20260105T010000Z");
    expect(r.out).toContain("dry run: nothing was downloaded or changed");
    await expect(fileSha256(to)).rejects.toThrow(/ENOENT/);
  });

  it("restores at an ISO time and prints what it re-applied", async () => {
    const src = await seed();
    const to = join(t.dir, "out.db");
    const r = await run(["--to", to, "--at", "2026-01-05T00:30:00+00:00"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("restored at 20260105T003000Z: restores to 20260105T000000Z");
    expect(dumpDatabase(to).rows.eventlog).toHaveLength(80);
    const latest = await run(["--to", to, "--force", "--json"]);
    expect(latest.code).toBe(0);
    expect(JSON.parse(latest.out)).toMatchObject({ restoresTo: "20260105T010000Z", rows: { "app/eventlog": 15 }, integrity: "ok" });
    // Incrementals carry the change tables (the event log); the state derived from it stays at the full.
    expect(dumpDatabase(to).rows.eventlog).toEqual(dumpDatabase(src).rows.eventlog);
  });

  it("exits 10 on an existing target, 2 on a bad --at or a missing --to, 9 on a time before every backup", async () => {
    await seed();
    const to = join(t.dir, "live.db");
    await writeFile(to, "live");
    expect((await run(["--to", to])).code).toBe(10);
    expect((await run(["--to", to, "--at", "yesterday"])).code).toBe(2);
    expect((await run(["--at", "latest"])).code).toBe(2);
    const early = await run(["--to", to, "--force", "--at", "20250101T000000Z"]);
    expect(early.code).toBe(9);
    expect(early.message).toContain("the oldest is 20260105T000000Z");
    expect(await fileSha256(to)).toBe(await import("node:crypto").then((c) => c.createHash("sha256").update("live").digest("hex")));
  });

  it("--help names the exit codes", async () => {
    const r = await run(["--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/10 the target exists/);
  });
});
