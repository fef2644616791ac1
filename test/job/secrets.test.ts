import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../job/cli.ts";
import { EXIT } from "../../job/errors.ts";
import { addSecret, redact } from "../../job/log.ts";
import { collector, runCli, writeLiveStoreDb } from "./backup-fixtures.ts";

/**
 * Secrets never leave the process (issue 14): a server in front of the Worker that echoes the token back,
 * in every encoding it could, gets it masked in the CLI's stdout and stderr, the agent's NDJSON stream and
 * logs, the failure webhook and `trigger --json`; URL credentials are never printed either.
 */

// '/', '+', '=' and '"' make the URL-encoded and JSON-escaped forms differ from the raw one.
const WORKER_TOKEN = 'clitoken-SECRET-7f3a9c/k+q="x"';
const AGENT_TOKEN = "agenttoken-SECRET-51d0e2/a+b=";
/** Fragments that betray a token in any encoding. */
const FRAGMENTS = ["SECRET-7f3a9c", "SECRET-51d0e2", "s3cret-pw"];

function leaks(text: string): string[] {
  return FRAGMENTS.filter((f) => text.includes(f));
}

/** A server in front of the Worker that answers every request 400, quoting the token it was sent. */
async function startEchoServer(): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    req.resume();
    const token = (req.headers.authorization ?? "").replace(/^Bearer /, "");
    const body = JSON.stringify({
      error: "bad_token",
      message: `token ${token} is not valid here (as sent: ${encodeURIComponent(token)}, quoted: ${JSON.stringify(token)}, form: ${new URLSearchParams({ t: token })})`,
    });
    res.writeHead(400, { "content-type": "application/json" }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** A webhook receiver that keeps each body exactly as it arrived. */
async function startRawReceiver(): Promise<{ url: string; bodies: string[]; close(): Promise<void> }> {
  const bodies: string[] = [];
  const server = createServer(async (req, res) => {
    let text = "";
    for await (const c of req) text += c;
    bodies.push(text);
    res.writeHead(204).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, bodies, close: () => new Promise<void>((r) => server.close(() => r())) };
}

let echo: Awaited<ReturnType<typeof startEchoServer>>;
let dir: string;
beforeAll(async () => {
  echo = await startEchoServer();
  dir = await mkdtemp(join(tmpdir(), "secrets-"));
});
afterAll(async () => {
  await echo.close();
  await rm(dir, { recursive: true, force: true });
});

describe("secrets in output", () => {
  it("the CLI masks a token that the server echoes, raw, URL-encoded and quoted, on stdout and stderr", async () => {
    for (const args of [["list"], ["list", "--json"], ["status"], ["restore", "--to", join(dir, "r.db")]]) {
      const stdout = collector();
      const stderr = collector();
      const code = await main([...args, "--retries", "0"], { stdout, stderr, env: { R2_WORKER_URL: echo.url, SERVER_BYPASS_TOKEN: WORKER_TOKEN } });
      expect(code, stderr.text()).not.toBe(EXIT.ok);
      // The echo did reach the output, masked.
      expect(stderr.text()).toMatch(/bad_token: token \[redacted\] is not valid here/);
      expect(leaks(stdout.text() + stderr.text()), stderr.text()).toEqual([]);
    }
  });

  it("a token given by flag is masked too", async () => {
    const stderr = collector();
    await main(["list", "--worker-url", echo.url, "--token", "flagtoken-SECRET-7f3a9c-2", "--retries", "0"], { stdout: collector(), stderr, env: {} });
    expect(stderr.text()).toMatch(/\[redacted\]/);
    expect(leaks(stderr.text())).toEqual([]);
  });

  it("credentials in R2_WORKER_URL are refused without being printed", async () => {
    const stdout = collector();
    const stderr = collector();
    const url = `http://user:s3cret-pw@${new URL(echo.url).host}`;
    const code = await main(["list"], { stdout, stderr, env: { R2_WORKER_URL: url, SERVER_BYPASS_TOKEN: WORKER_TOKEN } });
    expect(code).toBe(EXIT.usage);
    expect(stderr.text()).toMatch(/carries credentials/);
    expect(leaks(stdout.text() + stderr.text())).toEqual([]);
  });

  it("the agent's stream and logs, the failure webhook and trigger --json carry no token", async () => {
    const hook = await startRawReceiver();
    const db = join(dir, "eventlog@6.db");
    writeLiveStoreDb(db, { events: 10 });
    const agent = runCli(["agent", "--listen", "127.0.0.1:0", "--db", db, "--tmp-dir", join(dir, "tmp"), "--retries", "0"], {
      R2_WORKER_URL: echo.url,
      SERVER_BYPASS_TOKEN: WORKER_TOKEN,
      BACKUP_AGENT_TOKEN: AGENT_TOKEN,
      BACKUP_WEBHOOK_URL: hook.url,
    });
    try {
      let out = "";
      const agentUrl = await new Promise<string>((resolve, reject) => {
        agent.child.stdout!.on("data", (d) => {
          out += d;
          const m = /listening on (http:\/\/\S+)/.exec(out);
          if (m) resolve(m[1]!);
        });
        agent.child.once("exit", (code) => reject(new Error(`agent exited ${code}`)));
      });
      // The raw NDJSON stream, as any client of the agent sees it.
      const raw = await (await fetch(`${agentUrl}/backup`, { method: "POST", headers: { authorization: `Bearer ${AGENT_TOKEN}` }, body: "{}" })).text();
      expect(raw).toMatch(/"ok":false/);
      expect(raw).toMatch(/token \[redacted\] is not valid/);
      expect(leaks(raw), raw).toEqual([]);

      const stdout = collector();
      const stderr = collector();
      const code = await main(["trigger", "--agent-url", agentUrl, "--json", "--retries", "0"], { stdout, stderr, env: { BACKUP_AGENT_TOKEN: AGENT_TOKEN } });
      expect(code).not.toBe(EXIT.ok);
      expect(stdout.text()).toMatch(/"ok":false/);
      expect(leaks(stdout.text() + stderr.text()), stdout.text()).toEqual([]);

      expect(hook.bodies.length).toBeGreaterThanOrEqual(2);
      expect(hook.bodies.join("\n")).toMatch(/backup\.failed/);
      expect(leaks(hook.bodies.join("\n")), hook.bodies[0]).toEqual([]);
    } finally {
      agent.child.kill("SIGTERM");
      const done = await agent.done;
      expect(leaks(done.stdout + done.stderr), done.stderr).toEqual([]);
      await hook.close();
    }
  });

  it("redact masks a known secret in its raw, percent-encoded (either case), form-encoded and JSON-escaped forms", () => {
    addSecret(WORKER_TOKEN);
    for (const form of [
      WORKER_TOKEN,
      encodeURIComponent(WORKER_TOKEN),
      encodeURIComponent(WORKER_TOKEN).replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()),
      String(new URLSearchParams({ t: WORKER_TOKEN })).slice(2),
      JSON.stringify(WORKER_TOKEN),
    ]) {
      expect(leaks(redact(`before ${form} after`)), form).toEqual([]);
    }
    expect(redact("nothing secret here")).toBe("nothing secret here");
  });
});
