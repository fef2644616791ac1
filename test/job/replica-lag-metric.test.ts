import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { METRICS } from "../../core/index.ts";
import { backup } from "../../job/backup.ts";
import { main } from "../../job/cli.ts";
import type { MetricDatum, MetricsSink } from "../../job/notify.ts";
import { workerReplicaLag } from "../../job/replica-lag.ts";
import { HttpStore } from "../../job/store/http-store.ts";
import { startLocalWorker, type LocalWorker } from "../../worker/local.ts";
import { collector, writeLiveStoreDb } from "./backup-fixtures.ts";

/**
 * The CloudWatch half of the replica lag alarm: after each backup the job reads the lag from the Worker's
 * /api/status and reports ReplicaLagSets and ReplicaLagHours (the alarm in infra watches the hours; its
 * evaluation is checked in test/infra/config.test.ts). The Worker is the real one with two local buckets.
 */
let w: LocalWorker;
let dir: string;
beforeAll(async () => {
  w = await startLocalWorker({ replica: true });
  dir = await mkdtemp(join(tmpdir(), "replica-lag-metric-"));
});
afterAll(async () => {
  await w?.stop();
  await rm(dir, { recursive: true, force: true });
});

it("each backup reports the replica's lag: 1 set before the cron copies it, 0 after", async () => {
  const token = w.bindings.SERVER_BYPASS_TOKEN!;
  const store = new HttpStore({ url: w.url, token, attempts: 2, backoffMs: 10 });
  const sent: MetricDatum[][] = [];
  const metrics: MetricsSink = { put: async (data) => void sent.push(data) };
  const db = join(dir, "app.db");
  writeLiveStoreDb(db, { events: 20 });
  const lagOf = (i: number) => Object.fromEntries(sent[i]!.filter((d) => d.name.startsWith("ReplicaLag")).map((d) => [d.name, d.value]));

  await backup({ store, databases: [{ path: db }], kind: "full", tmpDir: join(dir, "tmp"), lockFile: false, promote: false, metrics, replicaLag: workerReplicaLag(w.url, token) });
  expect(lagOf(0)).toEqual({ [METRICS.replicaLagSets]: 1, [METRICS.replicaLagHours]: expect.any(Number) });
  expect(lagOf(0)[METRICS.replicaLagHours]).toBeLessThan(0.1);

  expect((await w.scheduled()).outcome).toBe("ok");
  writeLiveStoreDb(db, { from: 21, events: 5 });
  await new Promise((r) => setTimeout(r, 1100)); // set ids are whole seconds
  await backup({
    store,
    databases: [{ path: db }],
    kind: "incremental",
    tmpDir: join(dir, "tmp"),
    lockFile: false,
    promote: false,
    metrics,
    replicaLag: workerReplicaLag(w.url, token),
  });
  // The incremental itself is not copied yet: 1 again, and the full backup is no longer missing.
  expect(lagOf(1)[METRICS.replicaLagSets]).toBe(1);
  expect((await w.scheduled()).outcome).toBe("ok");
  const status = await workerReplicaLag(w.url, token)();
  expect(status).toMatchObject({ lag: 0, oldestMissingAgeHours: 0 });
});

it("the CLI wires it: `run` with CLOUDWATCH_NAMESPACE sends ReplicaLagSets and ReplicaLagHours", async () => {
  const bodies: Buffer[] = [];
  const cw = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      bodies.push(Buffer.concat(chunks));
      res
        .writeHead(200, { "content-type": "text/xml" })
        .end(
          '<PutMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></PutMetricDataResponse>',
        );
    });
  });
  await new Promise<void>((r) => cw.listen(0, "127.0.0.1", r));
  try {
    const db = join(dir, "cli.db");
    writeLiveStoreDb(db, { events: 10 });
    const stderr = collector();
    const code = await main(["run", "--db", db, "--kind", "full", "--tmp-dir", join(dir, "tmp"), "--no-promote"], {
      stdout: collector(),
      stderr,
      env: {
        R2_WORKER_URL: w.url,
        SERVER_BYPASS_TOKEN: w.bindings.SERVER_BYPASS_TOKEN,
        CLOUDWATCH_NAMESPACE: "R2SqliteBackup",
        CLOUDWATCH_ENDPOINT: `http://127.0.0.1:${(cw.address() as AddressInfo).port}`,
        AWS_REGION: "us-east-1",
        AWS_ACCESS_KEY_ID: "AKIATESTLOCALONLY",
        AWS_SECRET_ACCESS_KEY: "local-test-secret",
      },
    });
    expect(code, stderr.text()).toBe(0);
    const body = Buffer.concat(bodies).toString("latin1");
    expect(body).toContain(METRICS.replicaLagSets);
    expect(body).toContain(METRICS.replicaLagHours);
  } finally {
    cw.close();
  }
});
