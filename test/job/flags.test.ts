import { describe, expect, it } from "vitest";
import { DEFAULT_PART_BYTES } from "../../core/index.ts";
import { main } from "../../job/cli.ts";
import { DEFAULT_RETRIES } from "../../job/config.ts";
import { EXIT } from "../../job/errors.ts";
import { collector } from "./backup-fixtures.ts";

/**
 * One flag name per idea, and help generated from the flags (issue 14): `--integrity` on run, restore and
 * verify; the defaults in --help are the ones the code uses, so they cannot drift apart.
 */

async function cli(args: string[]) {
  const stdout = collector();
  const stderr = collector();
  const code = await main(args, { stdout, stderr, env: { R2_WORKER_URL: "http://127.0.0.1:9", SERVER_BYPASS_TOKEN: "flags-test-token" } });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

/** The help line of a flag, with its wrapped continuation lines joined. */
function helpOf(help: string, flag: string): string {
  const lines = help.split("\n");
  const i = lines.findIndex((l) => l.startsWith(`  ${flag} `) || l === `  ${flag}`);
  expect(i, `${flag} in\n${help}`).toBeGreaterThanOrEqual(0);
  const out = [lines[i]!];
  for (let j = i + 1; j < lines.length && /^ {28}\S/.test(lines[j]!); j++) out.push(lines[j]!.trim());
  return out.join(" ").replace(/\s+/g, " ");
}

describe("flags", () => {
  it("the defaults --help shows are the code's: part size, retries", async () => {
    const run = (await cli(["run", "--help"])).stdout;
    expect(helpOf(run, "--part-mib")).toContain(`(default ${DEFAULT_PART_BYTES / 1024 / 1024})`);
    expect(helpOf(run, "--retries")).toContain(`default ${DEFAULT_RETRIES})`);
    // --retries 4 is what the default does: five attempts.
    const list = await cli(["list", "--backoff-ms", "0"]);
    expect(list.code).toBe(EXIT.unreachable);
    expect(list.stderr).toMatch(new RegExp(`failed ${DEFAULT_RETRIES + 1} times`));
  });

  it("run, restore and verify share --integrity; restore's old --check is refused as a usage error", async () => {
    for (const command of ["run", "restore", "verify"]) expect(helpOf((await cli([command, "--help"])).stdout, "--integrity")).toMatch(/--integrity (quick\|full|full\|quick)/);
    const bad = await cli(["restore", "--to", "x.db", "--integrity", "sometimes"]);
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.stderr).toMatch(/parse flag '--integrity': 'sometimes' is not full or quick/);
    expect((await cli(["restore", "--to", "x.db", "--check", "quick"])).code).toBe(EXIT.usage);
  });

  it("trigger counts --retries like the other commands", async () => {
    expect(helpOf((await cli(["trigger", "--help"])).stdout, "--retries")).toMatch(/retries after the first attempt/);
  });
});
