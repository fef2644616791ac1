import { createCipheriv } from "node:crypto";
import { expect, test } from "vitest";
import { formatTimestamp, objectPath, type ApiStatus } from "../../core/index.ts";
import { useWorker, type TestWorker, type WebhookReceiver } from "./harness.ts";

/**
 * The replica lag alarm from the Worker's cron check (the webhook; CloudWatch is the job's metric, tested in
 * test/job and test/infra): a complete set missing from the replica for longer than REPLICA_MAX_LAG_HOURS
 * alerts, run after run while it stays behind; a lag within the limit and a lag of 0 stay quiet. The lag is
 * made real, not faked: a 12 MiB object copied one 5 MiB part per run.
 */
const HOUR = 3_600_000;
const ts = (hoursAgo: number) => formatTimestamp(new Date(Date.now() - hoursAgo * HOUR));

let w: TestWorker;
let hook: WebhookReceiver;
useWorker(
  (started, receiver) => {
    w = started;
    hook = receiver!;
  },
  { webhook: true, replica: true, bindings: { REPLICA_MAX_LAG_HOURS: "6", REPLICA_COPY_PART_MIB: "5", REPLICA_COPY_PARTS_PER_RUN: "1" } },
);

async function put(key: string, body: string | Buffer): Promise<void> {
  const response = await fetch(`${w.url}${objectPath(key)}`, { method: "PUT", headers: { "X-Server-Token": w.serverToken }, body });
  expect(response.status).toBe(201);
}

async function status(): Promise<ApiStatus> {
  const response = await fetch(`${w.url}/api/status`, { headers: { "X-Server-Token": w.serverToken } });
  return (await response.json()) as ApiStatus;
}

async function cron(): Promise<{ text: string; status: ApiStatus }[]> {
  hook.received.length = 0;
  expect((await w.scheduled()).outcome).toBe("ok");
  return [...hook.received] as { text: string; status: ApiStatus }[];
}

test("the lag alarm fires while a set stays missing longer than the limit, and is quiet within it and at 0", async () => {
  const old = `backups/full/${ts(10)}/`;
  const fresh = `backups/full/${ts(1 / 60)}/`;
  await put(`${old}app.db.zst`, createCipheriv("aes-256-ctr", Buffer.alloc(32, 1), Buffer.alloc(16)).update(Buffer.alloc(12 * 1024 * 1024)));
  await put(`${old}metadata.json`, "{}");
  await put(`${fresh}app.db.zst`, "small");
  await put(`${fresh}metadata.json`, "{}");

  // Runs 1 and 2: one part each of the 10-hour-old set; it stays missing, over the 6-hour limit: alert.
  for (const run of [1, 2]) {
    const alerts = await cron();
    expect(alerts, `run ${run}`).toHaveLength(1);
    expect(alerts[0]!.text).toContain(`the replica bucket lacks 2 complete set(s); the oldest, ${old}, is`);
    expect(alerts[0]!.status.replica).toMatchObject({ lag: 2, behind: true, maxLagHours: 6 });
    expect(alerts[0]!.status.replica!.oldestMissingAgeHours).toBeGreaterThan(9.9);
  }
  // Backups themselves are fresh: only the replica makes the status unhealthy.
  expect((await status()).problems).toHaveLength(1);

  // Run 3 finishes the old set; the fresh one is still missing but a minute old: a lag, within the limit.
  expect(await cron()).toEqual([]);
  expect((await status()).replica).toMatchObject({ lag: 1, missing: [fresh], behind: false });
  expect((await status()).healthy).toBe(true);

  // Run 4: lag 0, quiet.
  expect(await cron()).toEqual([]);
  expect((await status()).replica).toMatchObject({ lag: 0, oldestMissingAgeHours: 0, behind: false });
});
