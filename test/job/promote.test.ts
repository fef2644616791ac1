import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { appendDemoEvents } from "../../bench/livestore-db.ts";
import { dayOfTimestamp } from "../../core/index.ts";
import { backup } from "../../job/backup.ts";
import { restore } from "../../job/restore/index.ts";
import { HttpStore } from "../../job/store/http-store.ts";
import { startFaultProxy, verifyAllComplete, verifySet } from "./backup-fixtures.ts";
import { useTestBucket } from "./bucket.ts";
import { dumpDatabase } from "./restore-fixtures.ts";

/**
 * A daily promotion that stops half-way (write-once objects left under daily/<day>/, no manifest) is finished by
 * the next full backup of the day, with the full backup it started from: the day gets its daily copy.
 */
const t = useTestBucket("promote-");

describe("a daily promotion that failed half-way", () => {
  it("is resumed by the next full backup of the day: the objects already there are kept, the rest copied, the manifest last", async () => {
    const db = join(t.dir, "app.db");
    appendDemoEvents(db, 500, 1);
    const docs = join(t.dir, "docs");
    await mkdir(docs);
    await writeFile(join(docs, "readme.md"), "# Notes\n\nkept in the daily copy\n");
    let failDailyManifest = true;
    // The first run's daily documents and manifest never get through (500 on every attempt): its database
    // object is already there. The next run keeps that one and streams the documents from full/<first>/.
    const proxy = await startFaultProxy(t.bucket.url, (req) =>
      failDailyManifest && req.method === "PUT" && /\/backups\/daily\/[^/]+\/(metadata\.json|documents\.tar\.zst)/.test(req.url ?? "") ? "500" : "pass",
    );
    try {
      const store = new HttpStore({ url: proxy.url, token: t.bucket.token, attempts: 2, backoffMs: 5 });
      const take = () => backup({ store, databases: [{ path: db, source: "app" }], kind: "full", tmpDir: join(t.dir, "work"), lockFile: false, documents: { dir: docs } });
      const first = await take();
      const day = dayOfTimestamp(first.id);
      expect(first.promoted).toBeNull();
      expect(first.warnings.join("\n")).toMatch(/promote to daily\//);
      expect((await verifyAllComplete(t.bucket.store)).incomplete).toEqual([`daily/${day}`]);
      const atFirst = dumpDatabase(db);

      failDailyManifest = false;
      appendDemoEvents(db, 100, 2);
      const second = await take();
      expect(second.promoted).toMatchObject({ day, reason: expect.stringMatching(new RegExp(`finished the promotion of ${first.id} .*kept 1, copied 1`)) });
      const daily = await verifySet(t.bucket.store, "daily", day);
      expect(daily.manifest.promotedFrom).toBe(first.id);
      expect((await verifyAllComplete(t.bucket.store)).incomplete).toEqual([]);

      // The daily copy restores the first full backup's content (its own objects expired, say).
      for (const o of await t.bucket.admin.listAll(`backups/full/${first.id}/`)) await t.bucket.admin.delete(o.key);
      for (const o of await t.bucket.admin.listAll(`backups/full/${second.id}/`)) await t.bucket.admin.delete(o.key);
      const to = join(t.dir, "from-daily.db");
      // Just before the second full's data was read: the first full, from its daily copy.
      const r = await restore({ store: t.bucket.store, to, at: new Date(Date.parse(second.manifest.capturedAt!) - 1) });
      expect(r.full).toMatchObject({ kind: "daily", id: day });
      expect(dumpDatabase(to)).toEqual(atFirst);
    } finally {
      await proxy.close();
    }
  });
});
