import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { appendDemoEvents } from "../../bench/livestore-db.ts";
import { addRandomBlob, runCli, writeLiveStoreDb, type CliRun } from "./backup-fixtures.ts";
import { useTestBucket } from "./bucket.ts";
import { startFaultProxy } from "./restore-proxy.ts";
import { uploadFull } from "./restore-fixtures.ts";

/**
 * Ctrl-C and SIGTERM (issue 14): the CLI says what it stops, stops its requests at once, removes its
 * temporary files and exits 130 (SIGINT) or 143 (SIGTERM) within 2 s, leaving nothing that looks complete.
 */

const t = useTestBucket("signals-");

async function until(check: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function stop(run: CliRun, signal: NodeJS.Signals) {
  const sent = Date.now();
  run.child.kill(signal);
  const out = await run.done;
  return { ...out, ms: Date.now() - sent };
}

/** A proxy that forwards everything but never answers the part uploads: a backup hangs mid-upload. */
async function startPartHolder(upstream: string): Promise<{ url: string; held: () => number; close(): Promise<void> }> {
  const target = new URL(upstream);
  let held = 0;
  const server: Server = createServer((req, res) => {
    if (req.method === "PUT" && req.url?.includes("partNumber=")) {
      held++;
      req.resume();
      return;
    }
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on("error", () => req.socket.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    held: () => held,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe("signals", () => {
  it("SIGINT during a restore's download: says so, removes the temporary file, exits 130 well within 2 s", async () => {
    const src = join(t.dir, "app.src.db");
    appendDemoEvents(src, 200, 1);
    addRandomBlob(src, 4 * 1024 * 1024);
    await uploadFull(t.bucket.store, "20260105T000000Z", [{ source: "app", path: src }]);
    const proxy = await startFaultProxy(t.bucket.url, { kind: "stall", afterBytes: 1024 * 1024 });
    const to = join(t.dir, "restored.db");
    try {
      const run = runCli(["restore", "--to", to], { R2_WORKER_URL: proxy.url, SERVER_BYPASS_TOKEN: t.bucket.token });
      await until(() => readdirSync(t.dir).some((f) => f.includes(".restore-")), "the restore's temporary file");
      await new Promise((r) => setTimeout(r, 200));
      const out = await stop(run, "SIGINT");
      expect(out.code, out.stderr).toBe(130);
      expect(out.stderr).toMatch(/SIGINT: stopping 'restore'/);
      expect(out.stderr).toMatch(/stopped by a signal/);
      // It stopped itself: the 2 s guard would have left the temporary file (checked below); the margin
      // over 2 s is for a loaded machine's process exit.
      expect(out.ms).toBeLessThan(3000);
      expect(readdirSync(t.dir).filter((f) => f.includes(".restore-"))).toEqual([]);
      expect(existsSync(to)).toBe(false);
    } finally {
      await proxy.close();
    }
  }, 30_000);

  it("SIGTERM during a backup's upload: exits 143 with no manifest, no work directory and no lock left", async () => {
    const db = join(t.dir, "eventlog@6.db");
    writeLiveStoreDb(db, { events: 500 });
    addRandomBlob(db, 12 * 1024 * 1024);
    const tmp = join(t.dir, "tmp");
    const proxy = await startPartHolder(t.bucket.url);
    try {
      const run = runCli(["run", "--db", db, "--kind", "full", "--tmp-dir", tmp, "--part-mib", "5"], { R2_WORKER_URL: proxy.url, SERVER_BYPASS_TOKEN: t.bucket.token });
      await until(() => proxy.held() > 0, "a part upload");
      const out = await stop(run, "SIGTERM");
      expect(out.code, out.stderr).toBe(143);
      expect(out.stderr).toMatch(/SIGTERM: stopping 'run'/);
      expect(out.ms).toBeLessThan(3000);
      const keys = (await t.bucket.store.listAll("backups/")).map((o) => o.key);
      expect(keys.filter((k) => k.endsWith("metadata.json"))).toEqual([]);
      expect(readdirSync(tmp).filter((f) => f.startsWith("r2backup-work-") || f.endsWith(".lock"))).toEqual([]);
    } finally {
      await proxy.close();
    }
  }, 30_000);
});
