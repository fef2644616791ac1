import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { describe, expect, it } from "vitest";
import { main } from "../../job/cli.ts";
import { EXIT, exitCodeOf, toJobError } from "../../job/errors.ts";
import { collector, writeLiveStoreDb } from "./backup-fixtures.ts";
import { useTestBucket } from "./bucket.ts";
import { uploadFull } from "./restore-fixtures.ts";
import { appendDemoEvents } from "../../bench/livestore-db.ts";

/**
 * Every failure class maps to its documented exit code with a hint that fits, on one JSON line, never a
 * stack trace (issue 14): a full disk inside SQLite, an unwritable restore target, an unusable --tmp-dir,
 * a Worker URL that ends in /api, an unknown command; and --retries counts retries.
 */

const t = useTestBucket("exit-codes-");

async function cli(args: string[], env: Record<string, string> = {}) {
  const stdout = collector();
  const stderr = collector();
  const code = await main(args, { stdout, stderr, env: { R2_WORKER_URL: t.bucket.url, SERVER_BYPASS_TOKEN: t.bucket.token, ...env } });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

/** The one error line of a failed run, parsed. */
function errorLine(stderr: string): { message: string; exitCode: number; kind: string } {
  const lines = stderr
    .trim()
    .split("\n")
    .filter((l) => l.includes('"level":"error"'));
  expect(lines, stderr).toHaveLength(1);
  return JSON.parse(lines[0]!) as { message: string; exitCode: number; kind: string };
}

describe("exit codes and hints", () => {
  it("SQLite's 'database or disk is full' is a full disk (6), with the hint of the command that hit it", () => {
    const db = new DatabaseSync(join(t.dir, "small.db"));
    db.exec("CREATE TABLE t (x BLOB); PRAGMA max_page_count = 8;");
    let error: unknown;
    try {
      for (let i = 0; i < 100; i++) db.prepare("INSERT INTO t VALUES (zeroblob(4096))").run();
    } catch (e) {
      error = e;
    }
    db.close();
    expect((error as Error).message).toMatch(/full/);
    expect(exitCodeOf(error)).toBe(EXIT.diskFull);
    expect(toJobError(error, "restore").hint).toMatch(/target's filesystem/);
    expect(toJobError(error, "restore").hint).not.toMatch(/--tmp-dir/);
    expect(toJobError(error, "run").hint).toMatch(/--tmp-dir/);
  });

  it("a restore target that cannot be written is exit 2 naming the path, not a raw EACCES/EROFS", async () => {
    const src = join(t.dir, "app.src.db");
    appendDemoEvents(src, 20, 1);
    await uploadFull(t.bucket.store, "20260105T000000Z", [{ source: "app", path: src }]);
    // /sys refuses new files even to root.
    const r = await cli(["restore", "--to", "/sys/r2backup-test.db"]);
    expect(r.code, r.stderr).toBe(EXIT.usage);
    const line = errorLine(r.stderr);
    expect(line.message).toMatch(/restore: write '\/sys\/.*': (permission denied|the filesystem is read-only|operation not permitted) \(restore to a writable path/);
    expect(line.message).not.toMatch(/\n\s+at /);
  });

  it("--tmp-dir that cannot be used is exit 2 at once: a file, /proc (no new files), /proc/x (recursive mkdir would spin)", async () => {
    const db = join(t.dir, "a.db");
    writeLiveStoreDb(db, { events: 3 });
    for (const tmp of [db, "/proc", "/proc/r2backup-x/y"]) {
      const started = Date.now();
      const r = await cli(["run", "--db", db, "--kind", "full", "--tmp-dir", tmp]);
      expect(r.code, r.stderr).toBe(EXIT.usage);
      const line = errorLine(r.stderr);
      expect(line.message).toMatch(/prepare temporary directory '.*': .* \(pass --tmp-dir <a writable directory>/);
      expect(line.message).not.toMatch(/\n\s+at /);
      expect(Date.now() - started).toBeLessThan(5000);
    }
  }, 20_000);

  it("R2_WORKER_URL ending in /api is exit 2 saying to drop it", async () => {
    const r = await cli(["list"], { R2_WORKER_URL: `${t.bucket.url}/api` });
    expect(r.code).toBe(EXIT.usage);
    expect(errorLine(r.stderr).message).toContain(`drop '/api': R2_WORKER_URL=${t.bucket.url}`);
  });

  it("R2_WORKER_URL with a path, query or fragment after the host is exit 2 naming the origin, never showing the query", async () => {
    for (const [url, shown] of [
      [`${t.bucket.url}/some/path`, `${t.bucket.url}/some/path`],
      [`${t.bucket.url}//`, `${t.bucket.url}//`],
      [`${t.bucket.url}/?token=s3cr3t-in-the-query`, `${t.bucket.url}/?...`],
      [`${t.bucket.url}/#frag`, `${t.bucket.url}/#...`],
      [`${t.bucket.url}/api?sig=s3cr3t-in-the-query`, `${t.bucket.url}/api?...`],
    ]) {
      const r = await cli(["status"], { R2_WORKER_URL: url! });
      expect(r.code, url).toBe(EXIT.usage);
      expect(errorLine(r.stderr).message).toBe(
        `status: configure worker url '${shown}': the URL has a path, query or fragment after the host (R2_WORKER_URL is the Worker's origin: R2_WORKER_URL=${t.bucket.url})`,
      );
      expect(r.stderr).not.toContain("s3cr3t");
    }
    // One slash after the host is the origin.
    expect((await cli(["list"], { R2_WORKER_URL: `${t.bucket.url}/` })).code).toBe(EXIT.ok);
  });

  it("with --json a failure is JSON on stdout too (ok false, kind, exit code, the message of the error line); --version names the version", async () => {
    for (const args of [
      ["run", "--db", join(t.dir, "missing.db"), "--json"],
      ["restore", "--to", join(t.dir, "r.db"), "--json"],
      ["list", "--json", "--retries", "0"],
    ]) {
      const r = await cli(args, args[0] === "list" ? { R2_WORKER_URL: "http://127.0.0.1:9" } : {});
      expect(r.code).not.toBe(EXIT.ok);
      const line = errorLine(r.stderr);
      expect(JSON.parse(r.stdout)).toEqual({ ok: false, command: args[0], error: { kind: line.kind, exitCode: r.code, message: line.message } });
    }
    // Without --json stdout stays empty on failure.
    expect((await cli(["run", "--db", join(t.dir, "missing.db")])).stdout).toBe("");
    const version = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
    expect((await cli(["--version"])).stdout).toBe(`r2backup ${version}\n`);
  });

  it("an unknown command is exit 2 on a JSON line, like every other error", async () => {
    const r = await cli(["bakup"]);
    expect(r.code).toBe(EXIT.usage);
    const line = errorLine(r.stderr);
    expect(line).toMatchObject({ exitCode: 2, kind: "usage" });
    expect(line.message).toMatch(/run command 'bakup': unknown command \(commands: run, list/);
  });

  it("--retries counts retries: --retries 0 is one attempt, --retries 1 two", async () => {
    for (const [retries, attempts] of [
      ["0", 1],
      ["1", 2],
    ] as const) {
      const r = await cli(["list", "--retries", retries, "--backoff-ms", "1"], { R2_WORKER_URL: "http://127.0.0.1:9" });
      expect(r.code).toBe(EXIT.unreachable);
      expect(errorLine(r.stderr).message).toMatch(new RegExp(`failed ${attempts} times`));
    }
  });
});
