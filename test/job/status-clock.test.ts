import { describe, expect, it } from "vitest";
import { BINDINGS, formatTimestamp, type ApiStatus } from "../../core/index.ts";
import { main } from "../../job/cli.ts";
import { collector } from "./backup-fixtures.ts";
import { useTestBucket } from "./bucket.ts";

/**
 * `r2backup status` shares core's summarizeStatus with the Worker (issue 13): a stray future full, planted
 * straight into R2 (the Worker now refuses to write one), is printed as a problem and exits 1; it never
 * hides how old the real newest full is.
 */
const t = useTestBucket("r2b-status-clock-");

function cli(args: string[]) {
  const stdout = collector();
  const stderr = collector();
  return main(args, { stdout, stderr, env: { R2_WORKER_URL: t.bucket.url, SERVER_BYPASS_TOKEN: t.bucket.token } }).then((code) => ({
    code,
    stdout: stdout.text(),
    stderr: stderr.text(),
  }));
}

describe("r2backup status and the clock", () => {
  it("prints a stray future full as a problem, judges the real full's age, and exits 1", async () => {
    const bucket = await t.bucket.worker.mf.getR2Bucket(BINDINGS.bucket);
    const old = formatTimestamp(new Date(Date.now() - 10 * 3_600_000));
    for (const id of [old, "99991231T235959Z"]) {
      await bucket.put(`backups/full/${id}/app.db.zst`, "x");
      await bucket.put(`backups/full/${id}/metadata.json`, "{}");
    }
    const text = await cli(["status"]);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/^UNHEALTHY/);
    expect(text.stdout).toMatch(new RegExp(`full +${old} +\\(10(\\.\\d+)? h ago\\)`));
    expect(text.stdout).toMatch(/problem: the newest full backup 99991231T235959Z is dated 9999-12-31T23:59:59\.000Z, [\d.]+ hours in the future: a clock ahead or a stray object/);
    expect(text.stdout).toContain(`problem: the newest complete full backup ${old} is 10`);
    expect(text.stdout).not.toMatch(/-\d+(\.\d+)? h ago/);

    const json = await cli(["status", "--json"]);
    const status = JSON.parse(json.stdout) as ApiStatus;
    expect(status.full?.id).toBe(old);
    expect(status.healthy).toBe(false);
  });
});
