import { createServer, type IncomingMessage, type Server } from "node:http";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { describe, expect, it } from "vitest";
import { backup } from "../../job/backup.ts";
import { main } from "../../job/cli.ts";
import { createAgentHandler, listen } from "../../job/commands/agent.ts";
import { EXIT } from "../../job/errors.ts";
import { cloudWatchSink, METRICS, type CloudWatchLike } from "../../job/notify.ts";
import { NEVER_DRILLED_AGE_HOURS } from "../../core/index.ts";
import { collector, decodeChanges, runCli, verifySet, writeLiveStoreDb } from "./backup-fixtures.ts";
import { useTestBucket } from "./bucket.ts";

/**
 * The agent (POST /backup with its own token, 409 while running, NDJSON progress) and the trigger (exit 0
 * only when the backup completed); the in-process library API; CloudWatch metrics and the webhook.
 */

const t = useTestBucket("backup-agent-");
const AGENT_TOKEN = "agent-secret-0123456789";

function trigger(agentUrl: string, token = AGENT_TOKEN, extra: string[] = []) {
  const stdout = collector();
  const stderr = collector();
  return main(["trigger", "--agent-url", agentUrl, "--retries", "0", ...extra], { stdout, stderr, env: { BACKUP_AGENT_TOKEN: token } }).then((code) => ({
    code,
    stdout: stdout.text(),
    stderr: stderr.text(),
  }));
}

async function startAgentCli(db: string, extraEnv: Record<string, string> = {}) {
  const run = runCli(["agent", "--listen", "127.0.0.1:0", "--db", db, "--tmp-dir", join(t.dir, "tmp")], {
    R2_WORKER_URL: t.bucket.url,
    SERVER_BYPASS_TOKEN: t.bucket.token,
    BACKUP_AGENT_TOKEN: AGENT_TOKEN,
    ...extraEnv,
  });
  let out = "";
  const url = await new Promise<string>((resolve, reject) => {
    run.child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    run.child.once("exit", (code) => reject(new Error(`agent exited ${code}`)));
  });
  return {
    url,
    stop: async () => {
      run.child.kill("SIGTERM");
      return run.done;
    },
  };
}

describe("agent and trigger", () => {
  it("trigger exits 0 after the agent's backup completed and relays its progress; the agent's health needs no token", async () => {
    const db = join(t.dir, "eventlog@6.db");
    writeLiveStoreDb(db, { events: 1000 });
    const agent = await startAgentCli(db);
    try {
      const health = await fetch(`${agent.url}/health`);
      expect(await health.json()).toEqual({ ok: true, running: false });
      const r = await trigger(agent.url, AGENT_TOKEN, ["--kind", "full"]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^full backup (\d{8}T\d{6}Z) complete/);
      expect(r.stderr).toMatch(/"message":"uploaded eventlog@6.db.zst"/);
      const id = /backup (\S+) complete/.exec(r.stdout)![1]!;
      await verifySet(t.bucket.store, "full", id);
      writeLiveStoreDb(db, { from: 1001, events: 5 });
      const inc = await trigger(agent.url);
      expect(inc.code, inc.stderr).toBe(0);
      expect(inc.stdout).toMatch(/^incremental backup/);
    } finally {
      const stopped = await agent.stop();
      expect(stopped.code).toBe(0);
    }
  });

  it("trigger exits 4 on a wrong token, 5 when the agent is unreachable, 3 when the agent's backup failed on a bad database", async () => {
    await writeFile(join(t.dir, "not.db"), "plain text, not SQLite");
    const agent = await startAgentCli(join(t.dir, "not.db"));
    try {
      expect((await trigger(agent.url, "wrong-token")).code).toBe(EXIT.auth);
      const failed = await trigger(agent.url);
      expect(failed.code).toBe(EXIT.database);
      expect(failed.stderr).toMatch(/not a SQLite database/);
      expect(failed.stderr.match(/not a SQLite database/g)).toHaveLength(1);
    } finally {
      await agent.stop();
    }
    expect((await trigger("http://127.0.0.1:9")).code).toBe(EXIT.unreachable);
  });

  it("refuses to start on a short token or a port in use (exit 2, saying what to do), and warns of a database not there yet", async () => {
    const env = { R2_WORKER_URL: t.bucket.url, SERVER_BYPASS_TOKEN: t.bucket.token };
    const db = join(t.dir, "later.db");
    const args = (listen: string) => ["agent", "--listen", listen, "--db", db, "--tmp-dir", join(t.dir, "tmp")];
    const short = await runCli(args("127.0.0.1:0"), { ...env, BACKUP_AGENT_TOKEN: "a" }).done;
    expect(short.code).toBe(EXIT.usage);
    expect(short.stderr).toMatch(/start agent: BACKUP_AGENT_TOKEN is 1 characters \(use at least 16 random characters/);
    // A short previous token only warns: the rotation that replaces it must be able to start.
    const agent = await startAgentCli(db, { BACKUP_AGENT_TOKEN_PREVIOUS: "short-1" });
    try {
      const port = new URL(agent.url).port;
      const second = await runCli(args(`127.0.0.1:${port}`), { ...env, BACKUP_AGENT_TOKEN: AGENT_TOKEN }).done;
      expect(second.code).toBe(EXIT.usage);
      expect(second.stderr).toMatch(new RegExp(`start agent: --listen 127\\.0\\.0\\.1:${port} is already in use \\(EADDRINUSE\\) \\(another process listens there`));
      expect(second.stderr).not.toMatch(/\n\s+at /);
    } finally {
      const stopped = await agent.stop();
      expect(stopped.stderr).toMatch(/agent: database '.*later\.db' does not exist yet; a backup fails with exit 3 until it does/);
      expect(stopped.stderr).toMatch(/agent: BACKUP_AGENT_TOKEN_PREVIOUS is 7 characters; it is accepted until the rotation ends/);
    }
  });

  it("trigger prints the agent's failure once, and still prints it when the stream ends before the result", async () => {
    const failure = { type: "log", level: "error", message: "backup failed: open database '/data/app.db': disk I/O error", outcome: "failed", id: "20261129T000000Z" };
    const result = { type: "result", ok: false, kind: "full", error: { kind: "database", exitCode: EXIT.database, message: "open database '/data/app.db': disk I/O error" } };
    for (const withResult of [true, false]) {
      const server = createServer((_req, res) => {
        res.writeHead(200, { "content-type": "application/x-ndjson" });
        res.end(`${JSON.stringify(failure)}\n${withResult ? `${JSON.stringify(result)}\n` : ""}`);
      });
      const url = await listen(server, "127.0.0.1", 0);
      try {
        const r = await trigger(url);
        expect(r.code).toBe(withResult ? EXIT.database : EXIT.failed);
        expect(r.stderr.match(/disk I\/O error/g)).toHaveLength(1);
        if (!withResult) expect(r.stderr).toMatch(/the agent ended without a result/);
      } finally {
        await new Promise((r) => server.close(r));
      }
    }
  });

  it("answers 409 (trigger exit 7) while a backup runs, then serves the next one", async () => {
    const db = join(t.dir, "a.db");
    writeLiveStoreDb(db, { events: 10 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const handler = createAgentHandler({
      token: AGENT_TOKEN,
      run: async (kind, onEvent) => {
        await gate;
        return backup({ store: t.bucket.store, databases: [{ path: db }], kind, tmpDir: join(t.dir, "tmp"), onEvent });
      },
    });
    const server = createServer(handler);
    const url = await listen(server, "127.0.0.1", 0);
    try {
      const first = trigger(url);
      while (!handler.running()) await new Promise((r) => setTimeout(r, 10));
      const second = await trigger(url);
      expect(second.code).toBe(EXIT.busy);
      expect(second.stderr).toMatch(/already running/);
      release();
      expect((await first).code).toBe(0);
      const third = await trigger(url, AGENT_TOKEN, ["--json"]);
      expect(third.code).toBe(0);
      expect(JSON.parse(third.stdout)).toMatchObject({ type: "result", ok: true, kind: "incremental" });
    } finally {
      server.close();
    }
  });
});

describe("library API in-process (the LiveStore case)", () => {
  it("backs up through the app's own open connection, full then incremental, with no second connection", async () => {
    const path = join(t.dir, "eventlog@6.db");
    writeLiveStoreDb(path, { events: 100 });
    const app = new DatabaseSync(path);
    try {
      const full = await backup({
        store: t.bucket.store,
        databases: [{ source: "eventlog@6", db: app }],
        kind: "full",
        tmpDir: join(t.dir, "tmp"),
        app: { name: "todo", version: "1.2.3" },
      });
      expect(full.manifest.app).toEqual({ name: "todo", version: "1.2.3" });
      expect(full.manifest.databases[0]!.tables.eventlog).toBe(100);
      app.prepare("INSERT INTO eventlog (seqNumGlobal, seqNumClient, name, argsJson, clientId, sessionId) VALUES (101, 0, 'x', '{}', 'c', 's')").run();
      // The app keeps writing through the same connection, in its own transactions, while the backup runs.
      let next = 102;
      let running = true;
      const appWrites = (async () => {
        while (running) {
          app.exec(`BEGIN; INSERT INTO eventlog (seqNumGlobal, seqNumClient, name, argsJson, clientId, sessionId) VALUES (${next++}, 0, 'x', '{}', 'c', 's'); COMMIT;`);
          await new Promise((r) => setImmediate(r));
        }
      })();
      const inc = await backup({ store: t.bucket.store, databases: [{ source: "eventlog@6", db: app }], kind: "auto", tmpDir: join(t.dir, "tmp") });
      running = false;
      await appWrites;
      const rows = decodeChanges((await verifySet(t.bucket.store, "incremental", inc.id)).bytes.get("changes.ndjson.zst")!);
      const seqs = rows.map((r) => r.row.seqNumGlobal as number);
      expect(seqs[0]).toBe(101);
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => 101 + i));
      expect(inc.manifest.to[0]!.value).toEqual([seqs.at(-1), 0]);
      // The app's connection is still usable and not left in a transaction.
      app.exec(`BEGIN; INSERT INTO eventlog (seqNumGlobal, seqNumClient, name, argsJson, clientId, sessionId) VALUES (${next}, 0, 'x', '{}', 'c', 's'); COMMIT;`);
    } finally {
      app.close();
    }
  });

  it("accepts a snapshot callback; a callback that reports success but leaves no file fails the check (exit 8), with no manifest", async () => {
    const path = join(t.dir, "a.db");
    writeLiveStoreDb(path, { events: 5 });
    const ok = await backup({
      store: t.bucket.store,
      databases: [{ source: "app", snapshot: async (dest) => void new DatabaseSync(path).exec(`VACUUM INTO '${dest}'`) }],
      kind: "full",
      tmpDir: join(t.dir, "tmp"),
      promote: false,
    });
    expect(ok.manifest.databases[0]!.tables.eventlog).toBe(5);
    const err = await backup({ store: t.bucket.store, databases: [{ source: "app", snapshot: async () => {} }], kind: "full", tmpDir: join(t.dir, "tmp") }).catch(
      (e: unknown) => e,
    );
    expect((err as { exitCode: number }).exitCode).toBe(EXIT.integrity);
    expect((err as Error).message).toMatch(/reported success but left no file/);
    const manifests = (await t.bucket.store.listAll("backups/")).filter((o) => o.key.endsWith("metadata.json"));
    expect(manifests.map((o) => o.key)).toEqual([`backups/full/${ok.id}/metadata.json`]);
  });
});

interface Received {
  path: string;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

async function receiver(answer: (r: Received) => { status: number; body?: string; type?: string }): Promise<{ url: string; received: Received[]; server: Server }> {
  const received: Received[] = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const r = { path: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks) };
    received.push(r);
    const a = answer(r);
    res.writeHead(a.status, { "content-type": a.type ?? "application/json" });
    res.end(a.body ?? "{}");
  });
  const url = await listen(server, "127.0.0.1", 0);
  return { url, received, server };
}

describe("metrics and webhook", () => {
  it("puts BackupSucceeded, bytes and duration on success, BackupFailed on failure, and posts the webhook both times", async () => {
    const db = join(t.dir, "a.db");
    writeLiveStoreDb(db, { events: 50 });
    const sent: { Namespace?: string; MetricData?: { MetricName?: string; Value?: number; Unit?: string }[] }[] = [];
    const client: CloudWatchLike = { send: async (command) => void sent.push(command.input as (typeof sent)[number]) };
    const hook = await receiver(() => ({ status: 204, body: "" }));
    try {
      const metrics = cloudWatchSink({ namespace: "R2SqliteBackup", client });
      const ok = await backup({ store: t.bucket.store, databases: [{ path: db }], kind: "full", tmpDir: join(t.dir, "tmp"), metrics, webhookUrl: hook.url });
      await backup({ store: t.bucket.store, databases: [{ path: join(t.dir, "missing.db") }], kind: "full", tmpDir: join(t.dir, "tmp"), metrics, webhookUrl: hook.url }).catch(
        () => {},
      );
      expect(sent.map((s) => s.Namespace)).toEqual(["R2SqliteBackup", "R2SqliteBackup"]);
      const byName = (i: number) => Object.fromEntries(sent[i]!.MetricData!.map((d) => [d.MetricName, d.Value]));
      expect(byName(0)).toMatchObject({
        [METRICS.backupSucceeded]: 1,
        [METRICS.backupFailed]: 0,
        [METRICS.backupBytes]: ok.uncompressedBytes,
        [METRICS.storedBytes]: ok.storedBytes,
      });
      expect(byName(0)[METRICS.backupDurationSeconds]).toBeGreaterThan(0);
      expect(byName(1)).toMatchObject({ [METRICS.backupSucceeded]: 0, [METRICS.backupFailed]: 1 });
      // No drill has passed in this bucket: every run reports an age past the 35-day alarm.
      expect(byName(0)[METRICS.restoreDrillAgeHours]).toBe(NEVER_DRILLED_AGE_HOURS);
      expect(byName(1)[METRICS.restoreDrillAgeHours]).toBe(NEVER_DRILLED_AGE_HOURS);
      const bodies = hook.received.map((r) => JSON.parse(r.body.toString()) as Record<string, unknown>);
      expect(bodies[0]).toMatchObject({ event: "backup.succeeded", kind: "full", id: ok.id, manifestKey: ok.manifestKey });
      expect(bodies[1]).toMatchObject({ event: "backup.failed", error: { kind: "database" } });
    } finally {
      hook.server.close();
    }
  });

  it("the CLI sends PutMetricData to CLOUDWATCH_NAMESPACE through the real SDK (local endpoint), and a broken webhook only warns", async () => {
    const db = join(t.dir, "a.db");
    writeLiveStoreDb(db, { events: 50 });
    const cw = await receiver(() => ({
      status: 200,
      type: "text/xml",
      body: '<PutMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></PutMetricDataResponse>',
    }));
    const hook = await receiver(() => ({ status: 500 }));
    try {
      const stdout = collector();
      const stderr = collector();
      const code = await main(["run", "--db", db, "--kind", "full", "--tmp-dir", join(t.dir, "tmp")], {
        stdout,
        stderr,
        env: {
          R2_WORKER_URL: t.bucket.url,
          SERVER_BYPASS_TOKEN: t.bucket.token,
          CLOUDWATCH_NAMESPACE: "R2SqliteBackup",
          CLOUDWATCH_ENDPOINT: cw.url,
          AWS_REGION: "us-east-1",
          AWS_ACCESS_KEY_ID: "AKIATESTLOCALONLY",
          AWS_SECRET_ACCESS_KEY: "local-test-secret",
          BACKUP_WEBHOOK_URL: hook.url,
        },
      });
      expect(code, stderr.text()).toBe(0);
      expect(cw.received.length).toBeGreaterThanOrEqual(1);
      const body = cw.received[0]!.body.toString("latin1");
      for (const s of ["R2SqliteBackup", METRICS.backupSucceeded, METRICS.backupBytes, METRICS.backupDurationSeconds, METRICS.storedBytes]) expect(body).toContain(s);
      expect(hook.received.length).toBeGreaterThanOrEqual(2); // retried
      expect(stderr.text()).toMatch(/webhook failed/);
    } finally {
      cw.server.close();
      hook.server.close();
    }
  });
});
