import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { DatabaseSync } from "node:sqlite";
import {
  DR_EXIT,
  automationStacks,
  jobRestorer,
  main,
  runDisasterRecovery,
  waitForWorker,
  type DeploySummary,
  type RecoveryDeps,
  type RecoveryOptions,
  type RestoreOutcome,
  type RestoreRequest,
  type StackDriver,
  type StackOutput,
  type StackSession,
} from "../../dr/index.ts";
import { backup } from "../../job/backup.ts";
import { JobError } from "../../job/errors.ts";
import { HttpStore } from "../../job/store/http-store.ts";
import { startLocalWorker, type LocalWorker } from "../../worker/local.ts";

/**
 * The disaster-recovery orchestrator (dr/): the Pulumi Automation API behind a fake driver (no Pulumi CLI
 * can run here: this is the one allowed stand-in), the Worker's health behind a REAL local HTTP server,
 * and the restore behind its injected interface. Each step's failure must name the step, say what to do,
 * exit non-zero, and leave the target exactly as it was.
 */

// --- a real HTTP server standing in for the deployed Worker's /api/health ------------------------------
interface HealthServer {
  url: string;
  hits: string[];
  /** Statuses to answer in order; the last repeats. */
  answers: number[];
  server: Server;
}

async function startHealthServer(answers: number[] = [200]): Promise<HealthServer> {
  const hs: HealthServer = { url: "", hits: [], answers, server: createServer() };
  hs.server.on("request", (req, res) => {
    hs.hits.push(`${req.method} ${req.url}`);
    const status = hs.answers.length > 1 ? hs.answers.shift()! : hs.answers[0]!;
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(status === 200 ? { ok: true, service: "r2-sqlite-backup" } : { error: "unavailable", message: "not yet" }));
  });
  await new Promise<void>((r) => hs.server.listen(0, "127.0.0.1", r));
  hs.url = `http://127.0.0.1:${(hs.server.address() as AddressInfo).port}`;
  return hs;
}

// --- the fake Automation API driver ----------------------------------------------------------------------
interface FakeStackOptions {
  exists?: boolean;
  openError?: Error;
  upError?: Error;
  upResult?: string;
  refreshError?: Error;
  previewError?: Error;
  outputsError?: Error;
  outputs?: Record<string, StackOutput>;
  config?: Record<string, string>;
}

function fakeStacks(workerUrl: string, o: FakeStackOptions = {}): StackDriver & { calls: string[] } {
  const calls: string[] = [];
  const summary = (result: string): DeploySummary => ({ result, changes: { create: 12, same: 0 } });
  const session: StackSession = {
    name: "prod",
    async up(onOutput) {
      calls.push("up");
      onOutput("Updating (prod)\n  + cloudflare:index:R2Bucket backups created\n");
      if (o.upError) throw o.upError;
      return summary(o.upResult ?? "succeeded");
    },
    async refresh(onOutput) {
      calls.push("refresh");
      onOutput("Refreshing (prod)\n");
      if (o.refreshError) throw o.refreshError;
      return { result: "succeeded", changes: { same: 12 } };
    },
    async preview(kind) {
      calls.push(`preview:${kind}`);
      if (o.previewError) throw o.previewError;
      return { result: "preview", changes: { update: 1, same: 11 } };
    },
    async outputs() {
      calls.push("outputs");
      if (o.outputsError) throw o.outputsError;
      return o.outputs ?? { workerUrl: { value: workerUrl, secret: false }, bucketName: { value: "r2-sqlite-backup-prod-backups", secret: false } };
    },
    async config(key) {
      calls.push(`config:${key}`);
      return o.config?.[key];
    },
  };
  return {
    calls,
    async open({ stackName, workDir, create }) {
      calls.push(`open:${stackName}:${create ? "create" : "select"}:${workDir}`);
      if (o.openError) throw o.openError;
      if (o.exists === false && !create) return undefined;
      return session;
    },
  };
}

// --- the restore behind its injected interface ----------------------------------------------------------
/** Writes the "restored" database only on success, as the real engine's atomic replace does. */
function fakeRestorer(o: { error?: Error } = {}) {
  const calls: RestoreRequest[] = [];
  return {
    calls,
    async restore(request: RestoreRequest): Promise<RestoreOutcome> {
      calls.push(request);
      if (o.error) throw o.error;
      if (!request.dryRun) await writeFile(request.to, "restored database");
      return {
        at: request.at === "latest" ? "latest" : request.at.toISOString(),
        restoresTo: "20261129T120000Z",
        full: { kind: "full", id: "20261129T060000Z", ts: "20261129T060000Z" },
        chain: [{ kind: "incremental", id: "20261129T120000Z", ts: "20261129T120000Z" }],
        notes: ["chose full 20261129T060000Z: the newest complete full at or before latest"],
        dryRun: request.dryRun,
        targets: [{ source: "app", path: request.to, existed: false, size: 100, uncompressedSize: 400 }],
        bytes: request.dryRun ? 0 : 123,
        integrity: request.dryRun ? "not run" : "ok",
        durationMs: 5,
      };
    },
  };
}

/** Everything that could witness a half-done restore: the directory listing and the target's bytes. */
async function snapshotDir(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort()) out[name] = await readFile(join(dir, name), "utf8");
  return out;
}

const TOKEN = "tok-3f9a-never-printed";
let health: HealthServer;
/** A local port with nothing listening: connections are refused at once. */
let closedUrl = "";
let dir: string;
let target: string;

beforeAll(async () => {
  health = await startHealthServer();
  const closed = await startHealthServer();
  closedUrl = closed.url;
  await new Promise((r) => closed.server.close(r));
});
afterAll(async () => {
  await new Promise((r) => health.server.close(r));
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "dr-test-"));
  target = join(dir, "app.db");
  health.hits.length = 0;
  health.answers = [200];
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function options(extra: Partial<RecoveryOptions> = {}): RecoveryOptions {
  return { stack: "prod", to: target, workDir: "/repo", token: TOKEN, healthTimeoutMs: 2_000, ...extra };
}

function deps(stacks: StackDriver, restorer = fakeRestorer()): RecoveryDeps {
  return { stacks, waitForWorker: (url, o) => waitForWorker(url, { ...o, initialDelayMs: 20, maxDelayMs: 100 }), restorer };
}

describe("a recovery that succeeds", () => {
  it("selects or creates the stack, runs pulumi up, waits for /api/health, restores the newest backup, and reports each step", async () => {
    const stacks = fakeStacks(health.url);
    const restorer = fakeRestorer();
    const lines: string[] = [];
    const report = await runDisasterRecovery(options({ log: (l) => lines.push(l) }), deps(stacks, restorer));

    expect(report.exitCode).toBe(0);
    expect(report.ok).toBe(true);
    expect(stacks.calls).toEqual(["open:prod:create:/repo", "up", "outputs"]);
    expect(health.hits).toEqual(["GET /api/health"]);
    expect(restorer.calls).toHaveLength(1);
    expect(restorer.calls[0]).toMatchObject({ workerUrl: health.url, token: TOKEN, to: target, at: "latest", force: false, dryRun: false });
    expect(report.steps.map((s) => `${s.step}:${s.status}`)).toEqual(["preflight:ok", "stack:ok", "deploy:ok", "outputs:ok", "health:ok", "restore:ok"]);
    expect(report.steps.find((s) => s.step === "deploy")?.detail).toBe("pulumi up: 12 create");
    expect(report.steps.find((s) => s.step === "restore")?.detail).toContain("restored 20261129T120000Z (full 20261129T060000Z + 1 incremental)");
    expect(report.workerUrl).toBe(health.url);
    expect(await readFile(target, "utf8")).toBe("restored database");
    // The Pulumi output is streamed to the progress log.
    expect(lines.some((l) => l.endsWith("+ cloudflare:index:R2Bucket backups created"))).toBe(true);
    // The token is used, never reported.
    expect(JSON.stringify(report)).not.toContain(TOKEN);
    expect(lines.join("\n")).not.toContain(TOKEN);
  });

  it("--refresh-only refreshes a deployed stack instead of updating it, and never creates one", async () => {
    const stacks = fakeStacks(health.url);
    const report = await runDisasterRecovery(options({ refreshOnly: true }), deps(stacks));
    expect(report.exitCode).toBe(0);
    expect(report.action).toBe("refresh");
    expect(stacks.calls).toEqual(["open:prod:select:/repo", "refresh", "outputs"]);
  });

  it("--at restores the backup at that time; --force replaces an existing target", async () => {
    await writeFile(target, "old database");
    const restorer = fakeRestorer();
    const at = new Date("2026-11-29T08:00:00Z");
    const report = await runDisasterRecovery(options({ at, force: true }), deps(fakeStacks(health.url), restorer));
    expect(report.exitCode).toBe(0);
    expect(report.at).toBe("20261129T080000Z");
    expect(restorer.calls[0]).toMatchObject({ at, force: true });
    expect(await readFile(target, "utf8")).toBe("restored database");
  });

  it("waits for a Worker that is not answering yet, with backoff, over real HTTP", async () => {
    health.answers = [503, 503, 200];
    const lines: string[] = [];
    const report = await runDisasterRecovery(options({ log: (l) => lines.push(l) }), deps(fakeStacks(health.url)));
    expect(report.exitCode).toBe(0);
    expect(report.health?.attempts).toBe(3);
    expect(health.hits).toHaveLength(3);
    expect(lines.filter((l) => /attempt \d: HTTP 503/.test(l))).toHaveLength(2);
  });

  it("takes the token from the stack's serverToken output when SERVER_BYPASS_TOKEN is not set", async () => {
    const stacks = fakeStacks(health.url, { outputs: { workerUrl: { value: health.url, secret: false }, serverToken: { value: "from-output", secret: true } } });
    const restorer = fakeRestorer();
    const report = await runDisasterRecovery(options({ token: undefined }), deps(stacks, restorer));
    expect(report.exitCode).toBe(0);
    expect(restorer.calls[0]?.token).toBe("from-output");
    expect(JSON.stringify(report)).not.toContain("from-output");
  });

  it("else takes it from the stack's serverToken config (decrypted by the CLI)", async () => {
    const stacks = fakeStacks(health.url, { config: { "r2-sqlite-backup:serverToken": "from-config" } });
    const restorer = fakeRestorer();
    const report = await runDisasterRecovery(options({ token: undefined }), deps(stacks, restorer));
    expect(report.exitCode).toBe(0);
    expect(restorer.calls[0]?.token).toBe("from-config");
    expect(report.steps.find((s) => s.step === "outputs")?.detail).toContain("token from the stack's r2-sqlite-backup:serverToken config");
    expect(JSON.stringify(report)).not.toContain("from-config");
  });
});

/** One failure per step: the step named, a hint, its exit code, nothing after it run, the target untouched. */
describe.each([
  {
    step: "preflight",
    exit: DR_EXIT.targetExists,
    force: false,
    setup: () => ({}),
    message: /check target '.*app\.db': the file exists/,
    hint: /--force/,
  },
  {
    step: "stack",
    exit: DR_EXIT.stack,
    setup: () => ({ stack: { openError: new Error("code: 255\n stdout: \n stderr: error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions\n") } }),
    message: /select stack 'prod': error: PULUMI_ACCESS_TOKEN must be set/,
    hint: /pulumi login/,
  },
  {
    step: "stack",
    exit: DR_EXIT.stack,
    setup: () => ({ stack: { openError: Object.assign(new Error("spawn pulumi ENOENT"), { code: "ENOENT" }) } }),
    message: /select stack 'prod': spawn pulumi ENOENT/,
    hint: /install the Pulumi CLI/,
  },
  {
    step: "deploy",
    exit: DR_EXIT.deploy,
    setup: () => ({ stack: { upError: new Error("code: 255\nstdout: Updating (prod)\nstderr: error: update failed: creating R2 bucket: 403 Forbidden\n") } }),
    message: /pulumi up stack 'prod': error: update failed: creating R2 bucket: 403 Forbidden/,
    hint: /nothing was restored.*run the same command again/,
  },
  {
    step: "deploy",
    exit: DR_EXIT.deploy,
    setup: () => ({ stack: { upError: Object.assign(new Error("code: 255\nerror: the stack is currently locked"), { name: "ConcurrentUpdateError" }) } }),
    message: /the stack is currently locked/,
    hint: /pulumi cancel --stack prod/,
  },
  {
    step: "deploy",
    exit: DR_EXIT.deploy,
    setup: () => ({ stack: { upResult: "failed" } }),
    message: /pulumi up stack 'prod': finished as 'failed'/,
    hint: /nothing was restored/,
  },
  {
    step: "outputs",
    exit: DR_EXIT.outputs,
    setup: () => ({ stack: { outputs: { bucketName: { value: "b", secret: false } } } }),
    message: /read output 'workerUrl' of stack 'prod': missing \(outputs: bucketName\)/,
    hint: /must export workerUrl/,
  },
  {
    step: "outputs",
    exit: DR_EXIT.outputs,
    token: false,
    setup: () => ({}),
    message: /SERVER_BYPASS_TOKEN is not set, and the stack has no serverToken output and no r2-sqlite-backup:serverToken config/,
    hint: /export SERVER_BYPASS_TOKEN=.*pulumi stack export --show-secrets --stack prod.*--refresh-only/,
  },
  {
    step: "health",
    exit: DR_EXIT.health,
    setup: () => ({ answers: [503] }),
    message: /wait for worker 'http:\/\/127\.0\.0\.1:\d+': no healthy answer within 2 s: .*HTTP 503/,
    hint: /nothing was restored.*--refresh-only/,
  },
  {
    step: "health",
    exit: DR_EXIT.health,
    setup: () => ({ url: closedUrl }),
    message: /wait for worker 'http:\/\/127\.0\.0\.1:\d+'.*ECONNREFUSED/,
    hint: /Cloudflare dashboard/,
  },
  {
    step: "restore",
    exit: 8,
    setup: () => ({
      restoreError: new JobError("integrity", "download object 'backups/full/20261129T060000Z/app.db.zst': sha256 mismatch", {
        hint: "nothing was changed; the next older candidate is --at 20261128T180000Z",
      }),
    }),
    message: /restore to '.*app\.db': download object .* sha256 mismatch$/,
    hint: /next older candidate is --at 20261128T180000Z/,
  },
  {
    step: "restore",
    exit: DR_EXIT.restore,
    setup: () => ({ restoreError: new Error("socket hang up") }),
    message: /restore to '.*app\.db': socket hang up/,
    hint: /target was left as it was/,
  },
] as const)("a failure at the $step step ($message)", (c) => {
  it("stops there with a clear message and exit code, runs nothing after it, and leaves the target untouched", async () => {
    await writeFile(target, "the database before the disaster");
    const before = await snapshotDir(dir);
    const mtime = (await stat(target)).mtimeMs;
    const s = c.setup() as { stack?: FakeStackOptions; answers?: number[]; url?: string; restoreError?: Error };
    if (s.answers) health.answers = [...s.answers];
    const stacks = fakeStacks(s.url ?? health.url, s.stack);
    const restorer = fakeRestorer(s.restoreError ? { error: s.restoreError } : {});
    const force = "force" in c ? c.force : true;
    const report = await runDisasterRecovery(options({ force, ...("token" in c ? { token: undefined } : {}) }), deps(stacks, restorer));

    expect(report.ok).toBe(false);
    expect(report.exitCode).toBe(c.exit);
    expect(report.error?.step).toBe(c.step);
    expect(report.error?.message).toMatch(c.message);
    expect(report.error?.hint).toMatch(c.hint);
    const order = ["preflight", "stack", "deploy", "outputs", "health", "restore"];
    const failedAt = order.indexOf(c.step);
    expect(report.steps.map((x) => x.step)).toEqual(order);
    expect(report.steps.map((x) => x.status)).toEqual(order.map((_, i) => (i < failedAt ? "ok" : i === failedAt ? "failed" : "skipped")));
    // No restore is attempted after an earlier failure...
    expect(restorer.calls).toHaveLength(c.step === "restore" ? 1 : 0);
    if (failedAt < order.indexOf("health")) expect(health.hits).toEqual([]);
    if (c.step === "preflight") expect(stacks.calls).toEqual([]);
    // ...and whatever failed, the target is byte for byte as it was, with nothing left beside it.
    expect(await snapshotDir(dir)).toEqual(before);
    expect((await stat(target)).mtimeMs).toBe(mtime);
  });
});

describe("preflight catches what needs no network", () => {
  it("a target in a missing directory is refused before any stack is touched", async () => {
    const stacks = fakeStacks(health.url);
    const report = await runDisasterRecovery(options({ to: join(dir, "nope", "app.db") }), deps(stacks));
    expect(report.exitCode).toBe(DR_EXIT.usage);
    expect(report.error?.hint).toBe(`create it first: mkdir -p ${join(dir, "nope")}`);
    expect(stacks.calls).toEqual([]);
  });

  it("--refresh-only on a stack that does not exist fails at the stack step instead of creating it", async () => {
    const stacks = fakeStacks(health.url, { exists: false });
    const report = await runDisasterRecovery(options({ refreshOnly: true }), deps(stacks));
    expect(report.exitCode).toBe(DR_EXIT.stack);
    expect(report.error?.message).toMatch(/does not exist, and --refresh-only does not create stacks/);
    expect(stacks.calls).toEqual(["open:prod:select:/repo"]);
  });
});

describe("--dry-run shows the plan and changes nothing", () => {
  it("for a deployed stack: previews instead of deploying, probes the Worker once, and asks the restore for its plan", async () => {
    const stacks = fakeStacks(health.url);
    const restorer = fakeRestorer();
    const report = await runDisasterRecovery(options({ dryRun: true }), deps(stacks, restorer));
    expect(report.exitCode).toBe(0);
    expect(report.dryRun).toBe(true);
    expect(stacks.calls).toEqual(["open:prod:select:/repo", "preview:up", "outputs"]);
    expect(restorer.calls.map((c) => c.dryRun)).toEqual([true]);
    expect(report.steps.map((s) => `${s.step}:${s.status}`)).toEqual(["preflight:ok", "stack:ok", "deploy:planned", "outputs:ok", "health:ok", "restore:planned"]);
    expect(report.steps.find((s) => s.step === "deploy")?.detail).toBe("pulumi up would: 1 update; 11 unchanged");
    expect(report.steps.find((s) => s.step === "restore")?.detail).toMatch(/^would restore 20261129T120000Z .* nothing downloaded$/);
    await expect(stat(target)).rejects.toThrow(/ENOENT/);
  });

  it("for a stack that does not exist: plans its creation without creating it", async () => {
    const stacks = fakeStacks(health.url, { exists: false });
    const restorer = fakeRestorer();
    const report = await runDisasterRecovery(options({ dryRun: true, stack: "pr-42" }), deps(stacks, restorer));
    expect(report.exitCode).toBe(0);
    expect(report.stackCreated).toBe(true);
    expect(stacks.calls).toEqual(["open:pr-42:select:/repo"]);
    expect(restorer.calls).toEqual([]);
    expect(health.hits).toEqual([]);
    expect(report.steps.map((s) => s.status)).toEqual(["ok", "planned", "planned", "planned", "planned", "planned"]);
    expect(report.steps[1]?.detail).toMatch(/would be created/);
  });

  it("with the Worker down: the plan says a real run would wait, and no restore plan is asked for", async () => {
    health.answers = [503];
    const restorer = fakeRestorer();
    const report = await runDisasterRecovery(options({ dryRun: true, healthTimeoutMs: 200 }), deps(fakeStacks(health.url), restorer));
    expect(report.exitCode).toBe(0);
    expect(report.steps.find((s) => s.step === "health")?.detail).toMatch(/not answering now .*HTTP 503.*a real run waits up to 0.2 s/);
    expect(restorer.calls).toEqual([]);
  });

  it("a failing preview fails the plan, as the real run would fail", async () => {
    const report = await runDisasterRecovery(
      options({ dryRun: true }),
      deps(fakeStacks(health.url, { previewError: new Error("error: missing required configuration variable 'r2-sqlite-backup:zoneId'") })),
    );
    expect(report.exitCode).toBe(DR_EXIT.deploy);
    expect(report.error?.message).toMatch(/preview up of stack 'prod': error: missing required configuration/);
  });
});

describe("waitForWorker over real HTTP", () => {
  it("asks GET /api/health with backoff and gives up at the deadline with the last reason", async () => {
    health.answers = [500];
    const attempts: number[] = [];
    const started = Date.now();
    await expect(waitForWorker(`${health.url}/`, { timeoutMs: 1_000, initialDelayMs: 20, maxDelayMs: 80, onAttempt: (a) => attempts.push(a.nextDelayMs) })).rejects.toThrow(
      /GET http:\/\/127\.0\.0\.1:\d+\/api\/health: HTTP 500: .*unavailable.* \(\d+ attempts over [01] s\)/,
    );
    expect(Date.now() - started).toBeLessThan(3_000);
    // The pauses double: 20, 40, 80, then capped.
    expect(attempts.slice(0, 4)).toEqual([20, 40, 80, 80]);
    expect(health.hits.every((h) => h === "GET /api/health")).toBe(true);
  });

  it("returns the health body once the Worker answers", async () => {
    const result = await waitForWorker(health.url, { timeoutMs: 1_000 });
    expect(result).toMatchObject({ status: 200, attempts: 1, body: { ok: true, service: "r2-sqlite-backup" } });
  });
});

describe("npm run dr (dr/cli.ts main)", () => {
  const io = () => {
    const out = { stdout: "", stderr: "" };
    return { out, io: { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t), env: { SERVER_BYPASS_TOKEN: TOKEN } } };
  };

  it.each([
    [[], /missing --stack <name>/],
    [["--stack", "prod"], /missing --to <path>/],
    [["--stack", "prod", "--to", "x.db", "--at", "yesterday"], /--at: parse point in time 'yesterday'/],
    [["--stack", "prod", "--to", "x.db", "--health-timeout", "soon"], /--health-timeout: expected a number of seconds/],
    [["--stack", "prod", "--to", "x.db", "--bogus"], /Unknown option '--bogus'/],
    [["--stack", "PROD", "--to", "x.db"], /--stack 'PROD' must be lowercase .* would get the cloud names of stack 'prod'/],
    [["--stack", "acme/prod_", "--to", "x.db"], /--stack 'acme\/prod_' must be lowercase/],
  ])("%j is a usage error (exit 2) naming the flag", async (argv, message) => {
    const { out, io: cli } = io();
    const stacks = fakeStacks(health.url);
    expect(await main(argv, { stacks }, cli)).toBe(DR_EXIT.usage);
    expect(out.stderr).toMatch(message);
    expect(stacks.calls).toEqual([]);
  });

  it("--help lists the flags and the exit codes", async () => {
    const { out, io: cli } = io();
    expect(await main(["--help"], {}, cli)).toBe(0);
    for (const flag of ["--stack", "--to", "--at", "--dry-run", "--force", "--refresh-only", "--json"]) expect(out.stdout).toContain(flag);
    expect(out.stdout).toMatch(/Exit codes:[\s\S]*21 {2}pulumi up \/ refresh failed[\s\S]*23 {2}the Worker did not answer in time/);
  });

  it("runs the recovery and prints the report; --json prints it as JSON; the token comes from SERVER_BYPASS_TOKEN", async () => {
    const text = io();
    const restorer = fakeRestorer();
    expect(await main(["--stack", "prod", "--to", target], { stacks: fakeStacks(health.url), restorer, waitForWorker }, text.io)).toBe(0);
    expect(text.out.stdout).toMatch(/^Disaster recovery of stack 'prod' \(pulumi up\), restore the newest complete backup to /);
    expect(text.out.stdout).toMatch(/ok {6}restore {4}restored 20261129T120000Z/);
    expect(text.out.stdout).toContain("Recovered in");
    expect(restorer.calls[0]?.token).toBe(TOKEN);
    expect(restorer.calls[0]?.to).toBe(target);

    const json = io();
    expect(
      await main(
        ["--stack", "prod", "--to", join(dir, "other.db"), "--json", "--dry-run", "--at", "20261129T080000Z"],
        { stacks: fakeStacks(health.url), restorer: fakeRestorer(), waitForWorker },
        json.io,
      ),
    ).toBe(0);
    const report = JSON.parse(json.out.stdout);
    expect(report).toMatchObject({ ok: true, dryRun: true, stack: "prod", at: "20261129T080000Z", exitCode: 0 });
    expect(json.out.stdout + json.out.stderr).not.toContain(TOKEN);
  });

  it("prints a failure with its step, what to do, and returns its exit code", async () => {
    const { out, io: cli } = io();
    const code = await main(
      ["--stack", "prod", "--to", target],
      { stacks: fakeStacks(health.url, { upError: new Error("error: 403 Forbidden") }), restorer: fakeRestorer(), waitForWorker },
      cli,
    );
    expect(code).toBe(DR_EXIT.deploy);
    expect(out.stdout).toContain("FAILED  deploy");
    expect(out.stdout).toContain("error (deploy step): pulumi up stack 'prod': error: 403 Forbidden");
    expect(out.stdout).toMatch(/what to do: nothing was restored/);
    expect(out.stdout).toContain("exit code 21");
  });
});

describe("end to end with the real Worker (Miniflare, local R2) and the real restore engine", () => {
  // Only Pulumi is faked: its outputs point at a local Worker holding a real backup, the health wait and the
  // restore run for real through HttpStore.
  let worker: LocalWorker;
  let token: string;
  let backupId: string;

  beforeAll(async () => {
    worker = await startLocalWorker();
    token = worker.bindings.SERVER_BYPASS_TOKEN!;
    const src = await mkdtemp(join(tmpdir(), "dr-src-"));
    try {
      const db = new DatabaseSync(join(src, "app.db"));
      db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
      const insert = db.prepare("INSERT INTO notes (body) VALUES (?)");
      for (let i = 0; i < 250; i++) insert.run(`note ${i}`);
      db.close();
      const store = new HttpStore({ url: worker.url, token, attempts: 2, backoffMs: 10 });
      const result = await backup({ store, databases: [{ path: join(src, "app.db"), source: "app" }], kind: "full", tmpDir: src, lockFile: false, changeTables: [] });
      backupId = result.id;
    } finally {
      await rm(src, { recursive: true, force: true });
    }
  });
  afterAll(async () => {
    await worker?.stop();
  });

  const realDeps = (): RecoveryDeps => ({ stacks: fakeStacks(worker.url), waitForWorker, restorer: jobRestorer() });

  it("restores the newest complete backup to the target and reports it", async () => {
    const report = await runDisasterRecovery(options({ token }), realDeps());
    expect(report.error).toBeUndefined();
    expect(report.exitCode).toBe(0);
    expect(report.restore).toMatchObject({ restoresTo: backupId, full: { kind: "full", id: backupId }, integrity: "ok", dryRun: false });
    expect(report.health?.body).toMatchObject({ ok: true });
    const db = new DatabaseSync(target, { readOnly: true });
    try {
      expect(db.prepare("SELECT count(*) AS n, max(body) AS last FROM notes").get()).toEqual({ n: 250, last: "note 99" });
    } finally {
      db.close();
    }
  });

  it("--data-dir restores the app's data directory (each database at its path under it)", async () => {
    const dataDir = join(dir, "data");
    await mkdir(dataDir);
    const report = await runDisasterRecovery(options({ token, to: dataDir, dataDir: true }), realDeps());
    expect(report.error).toBeUndefined();
    expect(report.restore).toMatchObject({ restoresTo: backupId, targets: [{ source: "app", path: join(dataDir, "app.db") }] });
    const db = new DatabaseSync(join(dataDir, "app.db"), { readOnly: true });
    try {
      expect(db.prepare("SELECT count(*) AS n FROM notes").get()).toEqual({ n: 250 });
    } finally {
      db.close();
    }
    expect(await main(["--stack", "prod", "--to", "x.db", "--data-dir", dataDir], realDeps(), { stdout: () => {}, stderr: () => {}, env: {} })).toBe(DR_EXIT.usage);
  });

  it("--dry-run asks the real engine for its plan and writes nothing", async () => {
    const report = await runDisasterRecovery(options({ token, dryRun: true }), realDeps());
    expect(report.exitCode).toBe(0);
    expect(report.restore).toMatchObject({ dryRun: true, restoresTo: backupId, bytes: 0 });
    expect(await readdir(dir)).toEqual([]);
  });

  it("a restore the engine refuses (no backup at that time) exits with its code and leaves the target as it was", async () => {
    await writeFile(target, "the database before the disaster");
    const before = await snapshotDir(dir);
    const report = await runDisasterRecovery(options({ token, force: true, at: new Date("2001-01-01T00:00:00Z") }), realDeps());
    expect(report.exitCode).toBe(9);
    expect(report.error?.step).toBe("restore");
    expect(report.error?.message).toMatch(/^restore to '.*app\.db': /);
    expect(await snapshotDir(dir)).toEqual(before);
  });

  it("a wrong token fails the restore as an auth error (exit 4), target untouched", async () => {
    await writeFile(target, "the database before the disaster");
    const before = await snapshotDir(dir);
    const report = await runDisasterRecovery(options({ token: "wrong-token", force: true }), realDeps());
    expect(report.exitCode).toBe(4);
    expect(report.error?.step).toBe("restore");
    expect(JSON.stringify(report)).not.toContain("wrong-token");
    expect(await snapshotDir(dir)).toEqual(before);
  });
});

/**
 * A stand-in `pulumi` CLI (a small Node script) that the REAL Automation API drives: it proves the driver
 * in dr/stack.ts speaks to `LocalWorkspace` and `Stack` correctly (select, init, up, refresh, preview with
 * its event log, outputs with secrets, history). It keeps its "backend" in a JSON file.
 */
const FAKE_PULUMI = String.raw`
const fs = require("node:fs");
if (process.argv[2] === "version") { process.stdout.write("v3.200.0\n"); process.exit(0); }
const statePath = process.env.FAKE_PULUMI_STATE;
const state = JSON.parse(fs.readFileSync(statePath, "utf8"));
const args = process.argv.slice(2);
state.calls.push(args.filter((a) => !a.startsWith("--exec-") && a !== "auto.local" && a !== "--non-interactive").join(" "));
const save = () => fs.writeFileSync(statePath, JSON.stringify(state));
const stack = args[args.indexOf("--stack") + 1];
const fail = (msg) => { save(); process.stderr.write(msg + "\n"); process.exit(255); };
const record = (kind, result, changes) => { state.history.unshift({ version: state.history.length + 1, kind, startTime: "2026-11-29T12:00:00Z", endTime: "2026-11-29T12:01:00Z", message: "", environment: {}, config: {}, result, resourceChanges: changes }); };
const [cmd, sub] = args;
if (cmd === "stack" && sub === "select") { if (!state.stacks.includes(stack)) fail("error: no stack named '" + stack + "' found"); }
else if (cmd === "stack" && sub === "init") { state.stacks.push(args[2]); }
else if (cmd === "up") {
  process.stdout.write("Updating (" + stack + ")\n    + cloudflare:index/workersScript:WorkersScript api-worker created\n");
  if (state.failUp) fail("error: update failed: creating Workers script: 10000 Authentication error");
  record("update", state.upResult || "succeeded", { create: 3, same: 7 });
}
else if (cmd === "refresh") { process.stdout.write("Refreshing (" + stack + ")\n"); record("refresh", "succeeded", { same: 10 }); }
else if (cmd === "preview") {
  const log = args[args.indexOf("--event-log") + 1];
  fs.appendFileSync(log, JSON.stringify({ sequence: 1, timestamp: 1, summaryEvent: { maybeCorrupt: false, durationSeconds: 1, resourceChanges: { update: 2, same: 8 }, PolicyPacks: {} } }) + "\n");
  fs.appendFileSync(log, JSON.stringify({ sequence: 2, timestamp: 2, cancelEvent: {} }) + "\n");
}
else if (cmd === "stack" && sub === "output") {
  const show = args.includes("--show-secrets");
  const outs = { workerUrl: state.workerUrl, bucketName: "r2-sqlite-backup-prod-backups" };
  if (state.outputToken !== false) outs.serverToken = show ? "token-from-output" : "[secret]";
  process.stdout.write(JSON.stringify(outs));
}
else if (cmd === "config" && sub === "get") {
  const value = (state.config || {})[args[2]];
  if (value === undefined) fail("error: configuration key '" + args[2] + "' not found for stack '" + stack + "'");
  process.stdout.write(JSON.stringify({ value, secret: true }));
}
else if (cmd === "stack" && sub === "history") { process.stdout.write(JSON.stringify(state.history.slice(0, 1))); }
else fail("error: the fake pulumi does not know: " + args.join(" "));
save();
`;

describe("the Automation API driver (dr/stack.ts) against a stand-in pulumi CLI", () => {
  let root: string;
  let project: string;
  let statePath: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "dr-pulumi-"));
    await mkdir(join(root, "bin"));
    await writeFile(join(root, "bin", "pulumi"), `#!${process.execPath}\n${FAKE_PULUMI}`);
    await chmod(join(root, "bin", "pulumi"), 0o755);
    project = join(root, "project");
    await mkdir(project);
    await writeFile(join(project, "Pulumi.yaml"), "name: r2-sqlite-backup\nruntime: nodejs\nmain: infra/index.ts\n");
    statePath = join(root, "state.json");
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const setState = (extra: Record<string, unknown> = {}) => writeFile(statePath, JSON.stringify({ stacks: ["prod"], calls: [], history: [], workerUrl: health.url, ...extra }));
  const state = async () => JSON.parse(await readFile(statePath, "utf8")) as { calls: string[]; stacks: string[] };
  const driver = () => automationStacks({ pulumiRoot: root, envVars: { FAKE_PULUMI_STATE: statePath } });

  it("a full recovery: selects the stack, runs pulumi up, reads outputs (secrets decrypted), restores", async () => {
    await setState();
    const restorer = fakeRestorer();
    const lines: string[] = [];
    const report = await runDisasterRecovery(options({ workDir: project, token: undefined, log: (l) => lines.push(l) }), { stacks: driver(), waitForWorker, restorer });
    expect(report.error).toBeUndefined();
    expect(report.deploy).toEqual({ result: "succeeded", changes: { create: 3, same: 7 } });
    expect(report.steps.find((s) => s.step === "deploy")?.detail).toBe("pulumi up: 3 create; 7 unchanged");
    expect(restorer.calls[0]).toMatchObject({ workerUrl: health.url, token: "token-from-output" });
    expect(lines.some((l) => l.includes("+ cloudflare:index/workersScript:WorkersScript api-worker created"))).toBe(true);
    const calls = (await state()).calls;
    expect(calls[0]).toBe("stack select --stack prod");
    expect(calls.some((c) => /^up .*--skip-preview.*--stack prod/.test(c))).toBe(true);
    expect(calls.some((c) => /^stack output --json --show-secrets --stack prod/.test(c))).toBe(true);
  });

  it("creates a missing stack (pulumi stack init) for a recovery, but never for a dry run", async () => {
    await setState({ stacks: [] });
    const plan = await runDisasterRecovery(options({ workDir: project, dryRun: true }), { stacks: driver(), waitForWorker, restorer: fakeRestorer() });
    expect(plan.exitCode).toBe(0);
    expect(plan.stackCreated).toBe(true);
    expect((await state()).stacks).toEqual([]);

    await writeFile(statePath, JSON.stringify({ ...(await state()), outputToken: false, config: { "r2-sqlite-backup:serverToken": "token-from-config" } }));
    const restorer = fakeRestorer();
    const report = await runDisasterRecovery(options({ workDir: project, token: undefined }), { stacks: driver(), waitForWorker, restorer });
    expect(report.exitCode).toBe(0);
    expect(restorer.calls[0]?.token).toBe("token-from-config");
    expect((await state()).calls).toContain("config get r2-sqlite-backup:serverToken --json --stack prod");
    expect((await state()).stacks).toEqual(["prod"]);
    expect((await state()).calls.filter((c) => c.startsWith("stack init"))).toEqual(["stack init prod"]);
  });

  it("a dry run previews through the event log; --refresh-only refreshes", async () => {
    await setState();
    const plan = await runDisasterRecovery(options({ workDir: project, dryRun: true }), { stacks: driver(), waitForWorker, restorer: fakeRestorer() });
    expect(plan.error).toBeUndefined();
    expect(plan.deploy).toEqual({ result: "preview", changes: { update: 2, same: 8 } });
    expect((await state()).calls.some((c) => c.startsWith("up"))).toBe(false);

    const report = await runDisasterRecovery(options({ workDir: project, refreshOnly: true }), { stacks: driver(), waitForWorker, restorer: fakeRestorer() });
    expect(report.error).toBeUndefined();
    expect(report.deploy).toEqual({ result: "succeeded", changes: { same: 10 } });
  });

  it("a failed pulumi up surfaces the CLI's own error line, exit 21, and no restore", async () => {
    await setState({ failUp: true });
    const restorer = fakeRestorer();
    const report = await runDisasterRecovery(options({ workDir: project }), { stacks: driver(), waitForWorker, restorer });
    expect(report.exitCode).toBe(DR_EXIT.deploy);
    expect(report.error?.message).toBe("pulumi up stack 'prod': error: update failed: creating Workers script: 10000 Authentication error");
    expect(restorer.calls).toEqual([]);
  });
});

describe("the post-deploy smoke check (dr/smoke.ts) against the bundled Worker", () => {
  let worker: LocalWorker;
  beforeAll(async () => {
    worker = await startLocalWorker();
  });
  afterAll(async () => {
    await worker.stop();
  });

  it("passes on a deployed Worker: health, a refused anonymous request, a write and read of a backups/state/ key", async () => {
    const { smokeCheck, SMOKE_KEY } = await import("../../dr/smoke.ts");
    const steps = await smokeCheck(worker.url, worker.bindings.SERVER_BYPASS_TOKEN!, { marker: '{"run":"42"}' });
    expect(steps.map((s) => [s.step, s.ok])).toEqual([
      ["health", true],
      ["refuses without a token", true],
      ["write", true],
      ["read back", true],
    ]);
    const stored = await (await worker.mf.getR2Bucket("BACKUP_BUCKET")).get(SMOKE_KEY);
    expect(await stored?.text()).toBe('{"run":"42"}');
    // Run twice (every deploy does): the key is overwritable.
    expect((await smokeCheck(worker.url, worker.bindings.SERVER_BYPASS_TOKEN!)).every((s) => s.ok)).toBe(true);
  });

  it("fails the deploy on a wrong token, and on a Worker that never answers, naming the step", async () => {
    const { main, smokeCheck } = await import("../../dr/smoke.ts");
    const wrong = await smokeCheck(worker.url, "not-the-token");
    expect(wrong.at(-1)).toMatchObject({ step: "write", ok: false });
    expect(wrong.at(-1)?.detail).toMatch(/answered 401/);
    const closed = await smokeCheck("http://127.0.0.1:9", "t", { healthTimeoutMs: 300 });
    expect(closed).toEqual([expect.objectContaining({ step: "health", ok: false })]);
    expect(await main(["--worker-url", worker.url], { SERVER_BYPASS_TOKEN: "not-the-token" })).toBe(1);
    expect(await main(["--worker-url", worker.url], { SERVER_BYPASS_TOKEN: worker.bindings.SERVER_BYPASS_TOKEN })).toBe(0);
    expect(await main([], {})).toBe(2);
    expect(wrong.at(-1)?.detail).toMatch(/SERVER_BYPASS_TOKEN is not this Worker's token/);
  });

  it("refuses a URL that cannot be the Worker's origin, and a timeout that is not a number, at once (exit 2), never printing credentials", async () => {
    const { main } = await import("../../dr/smoke.ts");
    const errors: string[] = [];
    const spy = vi.spyOn(console, "error").mockImplementation((m: string) => void errors.push(m));
    try {
      const token = { SERVER_BYPASS_TOKEN: "t0ken-value" };
      const started = Date.now();
      for (const url of [`${worker.url}/api`, `${worker.url}/?x=1`, "backups.example.com", "http://u:hunter2@127.0.0.1:9"]) {
        expect(await main(["--worker-url", url], token), url).toBe(2);
      }
      expect(await main(["--worker-url", "http://127.0.0.1:9", "--health-timeout", "abc"], token)).toBe(2);
      expect(Date.now() - started).toBeLessThan(2000);
      expect(errors[0]).toMatch(/worker url '.*\/api': the URL ends with the API path \(drop '\/api': --worker-url=http:\/\/127\.0\.0\.1:\d+\)/);
      expect(errors.join("\n")).not.toContain("hunter2");
      expect(errors.at(-1)).toMatch(/--health-timeout 'abc' is not a number of seconds above 0/);
    } finally {
      spy.mockRestore();
    }
  });

  it("a Worker that answers health and then drops every connection fails the next step, named, with no stack trace", async () => {
    const { smokeCheck } = await import("../../dr/smoke.ts");
    const server = createServer((req, res) => {
      if (req.url === "/api/health") res.end('{"ok":true}');
      else req.socket.destroy();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const steps = await smokeCheck(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, "t", { healthTimeoutMs: 2000 });
      expect(steps.map((s) => [s.step, s.ok])).toEqual([
        ["health", true],
        ["refuses without a token", false],
      ]);
      expect(steps[1]!.detail).toMatch(/^the Worker did not answer: fetch failed/);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe("preview teardown empties the bucket through the Worker (infra/empty-bucket.ts)", () => {
  let worker: LocalWorker;
  beforeAll(async () => {
    worker = await startLocalWorker();
  });
  afterAll(async () => {
    await worker.stop();
  });

  it("deletes every object on destroy (more than a page, odd keys), with the admin token only", async () => {
    const { emptyBucketProvider } = await import("../../infra/empty-bucket.ts");
    const bucket = await worker.mf.getR2Bucket("BACKUP_BUCKET");
    for (let i = 0; i < 1005; i++) await bucket.put(`backups/full/20260101T0000${String(i).padStart(4, "0")}Z/app.db.zst`, "x");
    await bucket.put("backups/state/latest a+b.json", "{}");
    await expect(emptyBucketProvider.delete!("e", { workerUrl: worker.url, adminToken: worker.bindings.SERVER_BYPASS_TOKEN })).rejects.toThrow(/DELETE '.*' answered 403/);
    await emptyBucketProvider.delete!("e", { workerUrl: `${worker.url}/`, adminToken: worker.bindings.ADMIN_TOKEN });
    expect((await bucket.list({ prefix: "backups/" })).objects).toEqual([]);
    // Nothing to delete: done at once (a second destroy after a partial one).
    await expect(emptyBucketProvider.delete!("e", { workerUrl: worker.url, adminToken: worker.bindings.ADMIN_TOKEN })).resolves.toBeUndefined();
  });
});
