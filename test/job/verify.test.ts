import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { appendDemoEvents } from "../../bench/livestore-db.ts";
import { METRICS, PREFIXES, parseBackupKey } from "../../core/index.ts";
import { verifyCommand } from "../../job/commands/verify.ts";
import { createLogger } from "../../job/log.ts";
import type { MetricDatum } from "../../job/notify.ts";
import { NEVER_SUCCEEDED_AGE_HOURS, verify, type DrillRecord } from "../../job/restore/index.ts";
import { useTestBucket } from "./bucket.ts";
import { uploadFull, uploadIncremental } from "./restore-fixtures.ts";

const t = useTestBucket("verify-test-");

async function readDrill(key: string): Promise<DrillRecord> {
  const res = await t.bucket.store.get(key);
  return JSON.parse(await new Response(res!.body).text()) as DrillRecord;
}

function recorder() {
  const data: MetricDatum[] = [];
  return { data, sink: { put: async (d: MetricDatum[]) => void data.push(...d) } };
}

async function backupChain() {
  const a = { source: "eventlog@6", path: join(t.dir, "a.db") };
  const b = { source: "state@6", path: join(t.dir, "b.db") };
  appendDemoEvents(a.path, 120, 1);
  appendDemoEvents(b.path, 30, 2);
  const full = await uploadFull(t.bucket.store, "20260105T000000Z", [a, b]);
  appendDemoEvents(a.path, 20, 3);
  await uploadIncremental(t.bucket.store, "20260105T010000Z", full, [a, b]);
}

describe("verify (the restore drill)", () => {
  it("restores every database into a temporary directory, records the drill and puts metrics", async () => {
    await backupChain();
    const metrics = recorder();
    const drillTmp = join(t.dir, "drill-tmp");
    await import("node:fs/promises").then((fs) => fs.mkdir(drillTmp));

    const result = await verify({ store: t.bucket.store, tmpDir: drillTmp, now: () => new Date("2026-02-01T03:00:00Z"), metrics: metrics.sink });

    expect(result.record).toMatchObject({
      ts: "20260201T030000Z",
      ok: true,
      at: "latest",
      restoresTo: "20260105T010000Z",
      full: "20260105T000000Z",
      chain: ["20260105T010000Z"],
      sources: ["eventlog@6", "state@6"],
      integrity: "ok",
      rows: { "eventlog@6/eventlog": 20 },
    });
    expect(result.key).toBe("backups/drills/20260201T030000Z.json");
    expect(await readDrill(result.key!)).toEqual(result.record);
    expect(parseBackupKey(result.key!)).toEqual({ kind: "drill", ts: "20260201T030000Z" });
    expect(metrics.data).toContainEqual({ name: METRICS.restoreDrillAgeHours, value: 0, unit: "Count" });
    expect(metrics.data).toContainEqual({ name: "RestoreDrillFailed", value: 0, unit: "Count" });
    expect(await readdir(drillTmp)).toEqual([]);
  });

  it("records a failed drill, reports the last good drill's age, and keeps nothing", async () => {
    await backupChain();
    const good = await verify({ store: t.bucket.store, now: () => new Date("2026-02-01T00:00:00Z") });
    expect(good.record.ok).toBe(true);
    // Damage the incremental after the good drill: the next drill must fail, not substitute the full alone.
    await t.bucket.admin.delete("backups/incremental/20260105T010000Z/changes.ndjson.zst");
    await t.bucket.store.put("backups/incremental/20260105T010000Z/changes.ndjson.zst", new Uint8Array([40, 181, 47, 253, 0, 0]));
    const metrics = recorder();

    const failed = await verify({ store: t.bucket.store, now: () => new Date("2026-02-03T00:00:00Z"), metrics: metrics.sink });

    expect(failed.record).toMatchObject({ ts: "20260203T000000Z", ok: false, integrity: "failed", restoresTo: null });
    expect(failed.record.error).toContain("backups/incremental/20260105T010000Z/changes.ndjson.zst");
    expect(failed.record.error).toContain("--at 20260105T000000Z");
    expect((await readDrill(failed.key!)).ok).toBe(false);
    expect(metrics.data).toContainEqual({ name: METRICS.restoreDrillAgeHours, value: 48, unit: "Count" });
    expect(metrics.data).toContainEqual({ name: "RestoreDrillFailed", value: 1, unit: "Count" });
    const drills = (await t.bucket.store.listAll(PREFIXES.drills)).map((o) => o.key);
    expect(drills).toEqual(["backups/drills/20260201T000000Z.json", "backups/drills/20260203T000000Z.failed.json"]);
  });

  it("on an empty bucket fails, is recorded, and reports an age over the alarm threshold", async () => {
    const metrics = recorder();
    const result = await verify({ store: t.bucket.store, now: () => new Date("2026-02-01T00:00:00Z"), metrics: metrics.sink });
    expect(result.record.ok).toBe(false);
    expect(result.record.error).toContain("holds no complete full backup");
    expect(result.key).toBe("backups/drills/20260201T000000Z.failed.json");
    expect(metrics.data).toContainEqual({ name: METRICS.restoreDrillAgeHours, value: NEVER_SUCCEEDED_AGE_HOURS, unit: "Count" });
  });
});

describe("r2backup verify", () => {
  function ctxFor(env: Record<string, string>) {
    let out = "";
    let err = "";
    const io = { stdout: { write: (t: string) => ((out += t), true) }, stderr: { write: (t: string) => ((err += t), true) }, env };
    return { ctx: { io, env, logger: createLogger(io.stderr, { json: true }) }, out: () => out, err: () => err };
  }
  const env = () => ({ R2_WORKER_URL: t.bucket.worker.url, SERVER_BYPASS_TOKEN: t.bucket.worker.bindings.SERVER_BYPASS_TOKEN! });

  it("exits 0 and prints the record after a good drill", async () => {
    await backupChain();
    const c = ctxFor(env());
    const code = await verifyCommand.run(["--json"], c.ctx);
    expect(code).toBe(0);
    const printed = JSON.parse(c.out()) as DrillRecord & { key: string };
    expect(printed).toMatchObject({ ok: true, restoresTo: "20260105T010000Z" });
    expect(printed.key).toMatch(/^backups\/drills\/\d{8}T\d{6}Z\.json$/);
  });

  it("exits with the restore's code when the drill fails, and still records it", async () => {
    const c = ctxFor(env());
    const code = await verifyCommand.run([], c.ctx);
    expect(code).toBe(9);
    expect(c.out()).toMatch(/FAILED: .*no complete full backup/);
    expect(c.out()).toMatch(/recorded as backups\/drills\//);
    expect(await t.bucket.store.listAll(PREFIXES.drills)).toHaveLength(1);
  });
});
