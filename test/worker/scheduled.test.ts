import { createCipheriv, createHash } from "node:crypto";
import { describe, expect, test } from "vitest";
import { formatDay, formatTimestamp, objectPath, type ApiStatus } from "../../core/index.ts";
import { allKeys, startWorker, useWorker, type TestWorker, type WebhookReceiver } from "./harness.ts";

const HOUR = 3_600_000;
const ts = (hoursAgo: number) => formatTimestamp(new Date(Date.now() - hoursAgo * HOUR));

async function putSet(w: TestWorker, prefix: string, files: string[]): Promise<void> {
  for (const file of files) {
    const response = await fetch(`${w.url}${objectPath(`${prefix}${file}`)}`, {
      method: "PUT",
      headers: { "X-Server-Token": w.serverToken },
      body: `${prefix}${file}`,
    });
    expect(response.status).toBe(201);
  }
}

async function status(w: TestWorker): Promise<ApiStatus> {
  const response = await fetch(`${w.url}/api/status`, { headers: { "X-Server-Token": w.serverToken } });
  expect(response.status).toBe(200);
  return (await response.json()) as ApiStatus;
}

describe("the scheduled freshness check", () => {
  let hook: WebhookReceiver;
  let w: TestWorker;
  useWorker(
    (started, receiver) => {
      w = started;
      hook = receiver!;
    },
    { webhook: true, bindings: { MAX_BACKUP_AGE_HOURS: "7" } },
  );

  test("with no backup at all, it posts an alert", async () => {
    expect((await w.scheduled()).outcome).toBe("ok");
    expect(hook.received).toHaveLength(1);
    const alert = hook.received[0] as { text: string; status: ApiStatus };
    expect(alert.text).toContain("no complete full backup");
    expect(alert.status.healthy).toBe(false);
  });

  test("when the newest complete full backup is older than MAX_BACKUP_AGE_HOURS, it posts an alert naming it", async () => {
    hook.received.length = 0;
    const old = ts(10);
    await putSet(w, `backups/full/${old}/`, ["app.db.zst", "metadata.json"]);
    // A newer but incomplete backup (no manifest) does not count.
    await putSet(w, `backups/full/${ts(1)}/`, ["app.db.zst"]);
    expect((await w.scheduled()).outcome).toBe("ok");
    expect(hook.received).toHaveLength(1);
    const alert = hook.received[0] as { text: string; status: ApiStatus };
    expect(alert.status.full?.id).toBe(old);
    expect(alert.text).toContain(old);
    expect((await status(w)).healthy).toBe(false);
  });

  test("when a fresh complete full backup exists, it stays quiet", async () => {
    hook.received.length = 0;
    const fresh = ts(1 / 60);
    await putSet(w, `backups/full/${fresh}/`, ["app.db.zst", "metadata.json"]);
    expect((await w.scheduled()).outcome).toBe("ok");
    expect(hook.received).toEqual([]);
    const s = await status(w);
    expect(s.healthy).toBe(true);
    expect(s.full?.id).toBe(fresh);
    expect(s.problems).toEqual([]);
  });
});

describe("a webhook that fails", () => {
  test("makes the cron run fail, so the failure shows in the Worker's cron log", async () => {
    const { createServer } = await import("node:http");
    const server = createServer((_req, res) => res.writeHead(500).end("down"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as import("node:net").AddressInfo;
    const w = await startWorker({ bindings: { ALERT_WEBHOOK_URL: `http://127.0.0.1:${port}/hook` } });
    try {
      expect((await w.scheduled()).outcome).not.toBe("ok");
    } finally {
      await w.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe("GET /api/status", () => {
  let w: TestWorker;
  useWorker((started) => (w = started), { bindings: { MAX_BACKUP_AGE_HOURS: "24" } });

  test("reports the newest complete full, incremental, daily and drill with their ages", async () => {
    const full = ts(5);
    const inc = ts(2);
    const drill = ts(48);
    const day = formatDay(new Date(Date.now() - 5 * HOUR));
    await putSet(w, `backups/full/${ts(30)}/`, ["app.db.zst", "metadata.json"]);
    await putSet(w, `backups/full/${full}/`, ["app.db.zst", "metadata.json"]);
    await putSet(w, `backups/incremental/${inc}/`, ["changes.ndjson.zst", "metadata.json"]);
    await putSet(w, `backups/incremental/${ts(1)}/`, ["changes.ndjson.zst"]);
    await putSet(w, `backups/daily/${day}/`, ["app.db.zst", "metadata.json"]);
    await putSet(w, "backups/drills/", [`${drill}.json`]);
    await putSet(w, "backups/state/", ["latest"]);
    const s = await status(w);
    expect(s).toMatchObject({ healthy: true, maxBackupAgeHours: 24, problems: [] });
    expect(s.full?.id).toBe(full);
    expect(s.full!.ageHours).toBeGreaterThanOrEqual(4.9);
    expect(s.full!.ageHours).toBeLessThan(6);
    expect(s.incremental?.id).toBe(inc);
    expect(s.daily?.id).toBe(day);
    expect(s.drill?.id).toBe(drill);
    expect(s.replica).toBeUndefined();
  });
});

describe("the replica bucket", () => {
  let w: TestWorker;
  let hook: WebhookReceiver;
  useWorker(
    (started, receiver) => {
      w = started;
      hook = receiver!;
    },
    { webhook: true, replica: true },
  );

  test("status reports the complete sets the replica lacks; the cron copies them, manifest last, and the lag drops to 0", async () => {
    const a = ts(3);
    const b = ts(2);
    const incomplete = ts(1);
    await putSet(w, `backups/full/${a}/`, ["app.db.zst", "documents.tar.zst", "metadata.json"]);
    await putSet(w, `backups/incremental/${b}/`, ["changes.ndjson.zst", "metadata.json"]);
    await putSet(w, `backups/full/${incomplete}/`, ["app.db.zst"]);
    const before = await status(w);
    expect(before.replica).toMatchObject({ lag: 2, missing: [`backups/full/${a}/`, `backups/incremental/${b}/`], behind: false });

    expect((await w.scheduled()).outcome).toBe("ok");
    const copied = await allKeys(w.replicaBucket!);
    expect(copied).toEqual([
      `backups/full/${a}/app.db.zst`,
      `backups/full/${a}/documents.tar.zst`,
      `backups/full/${a}/metadata.json`,
      `backups/incremental/${b}/changes.ndjson.zst`,
      `backups/incremental/${b}/metadata.json`,
    ]);
    for (const key of copied) {
      expect(await (await w.replicaBucket!.get(key))!.text()).toBe(key);
    }
    // Manifest last: each set's metadata.json was uploaded after its other files.
    const uploaded = async (key: string) => (await w.replicaBucket!.head(key))!.uploaded.getTime();
    expect(await uploaded(`backups/full/${a}/metadata.json`)).toBeGreaterThanOrEqual(await uploaded(`backups/full/${a}/documents.tar.zst`));
    expect((await status(w)).replica).toMatchObject({ lag: 0, missing: [], oldestMissingAgeHours: 0, behind: false });
    expect(hook.received).toEqual([]);
  });

  test("an object larger than one copy part is copied part by part, byte for byte", async () => {
    const set = `backups/full/${ts(0.75)}/`;
    const size = 70 * 1024 * 1024 + 12345;
    const data = createCipheriv("aes-256-ctr", Buffer.alloc(32, 3), Buffer.alloc(16)).update(Buffer.alloc(size));
    const put = await fetch(`${w.url}${objectPath(`${set}big.db.zst`)}`, { method: "PUT", headers: { "X-Server-Token": w.serverToken }, body: data });
    expect(put.status).toBe(201);
    await putSet(w, set, ["metadata.json"]);
    expect((await w.scheduled()).outcome).toBe("ok");
    const copy = await w.replicaBucket!.get(`${set}big.db.zst`);
    expect(copy!.size).toBe(size);
    const digest = createHash("sha256");
    for await (const chunk of copy!.body as unknown as AsyncIterable<Uint8Array>) digest.update(chunk);
    expect(digest.digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
    expect((await status(w)).replica?.lag).toBe(0);
  });

  test("an interrupted copy (files without the manifest) is finished by the next run", async () => {
    const c = ts(0.5);
    await putSet(w, `backups/full/${c}/`, ["app.db.zst", "metadata.json"]);
    await w.replicaBucket!.put(`backups/full/${c}/app.db.zst`, `backups/full/${c}/app.db.zst`);
    expect((await status(w)).replica?.lag).toBe(1);
    expect((await w.scheduled()).outcome).toBe("ok");
    expect(await (await w.replicaBucket!.get(`backups/full/${c}/metadata.json`))!.text()).toBe(`backups/full/${c}/metadata.json`);
    expect((await status(w)).replica?.lag).toBe(0);
  });
});
