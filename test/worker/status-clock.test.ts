import { describe, expect, test } from "vitest";
import { formatTimestamp, objectPath, type ApiStatus } from "../../core/index.ts";
import { useWorker, type TestWorker, type WebhookReceiver } from "./harness.ts";

/**
 * `/api/status` and the freshness alert judge time by the Worker's clock (issue 13): a stray future full
 * (planted straight into R2, as one written before the Worker refused them) makes the bucket unhealthy and
 * is named, it never hides an old chain, and no age is negative.
 */
const HOUR = 3_600_000;
const ts = (hoursAgo: number) => formatTimestamp(new Date(Date.now() - hoursAgo * HOUR));

let hook: WebhookReceiver;
let w: TestWorker;
useWorker(
  (started, receiver) => {
    w = started;
    hook = receiver!;
  },
  { webhook: true, bindings: { MAX_BACKUP_AGE_HOURS: "7" } },
);

async function status(): Promise<ApiStatus> {
  const response = await fetch(`${w.url}/api/status`, { headers: { "X-Server-Token": w.serverToken } });
  expect(response.status).toBe(200);
  return (await response.json()) as ApiStatus;
}
const ages = (s: ApiStatus) => [s.full, s.incremental, s.daily, s.drill].flatMap((e) => (e ? [e.ageHours] : []));

describe("/api/status with the Worker's clock", () => {
  test("a fresh chain written through the API is healthy, as before", async () => {
    const fresh = ts(1 / 60);
    for (const file of ["app.db.zst", "metadata.json"]) {
      const put = await fetch(`${w.url}${objectPath(`backups/full/${fresh}/${file}`)}`, { method: "PUT", headers: { "X-Server-Token": w.serverToken }, body: file });
      expect(put.status).toBe(201);
    }
    const s = await status();
    expect(s).toMatchObject({ healthy: true, problems: [], full: { id: fresh } });
    expect(ages(s).every((a) => a >= 0)).toBe(true);
    expect((await w.scheduled()).outcome).toBe("ok");
    expect(hook.received).toEqual([]);
  });

  test("a stray future full makes it unhealthy, is named, hides nothing, and the alert fires", async () => {
    await w.bucket.put("backups/full/99991231T235959Z/app.db.zst", "stray");
    await w.bucket.put("backups/full/99991231T235959Z/metadata.json", "{}");
    const s = await status();
    expect(s.healthy).toBe(false);
    expect(s.full?.id).not.toBe("99991231T235959Z");
    expect(s.problems).toContainEqual(
      expect.stringMatching(/^the newest full backup 99991231T235959Z is dated 9999-12-31T23:59:59\.000Z, [\d.]+ hours in the future: a clock ahead or a stray object/),
    );
    expect(ages(s).every((a) => a >= 0)).toBe(true);
    expect((await w.scheduled()).outcome).toBe("ok");
    expect(hook.received).toHaveLength(1);
    expect((hook.received[0] as { text: string }).text).toContain("99991231T235959Z");
  });
});
