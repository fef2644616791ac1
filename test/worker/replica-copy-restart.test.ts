import { createCipheriv, createHash } from "node:crypto";
import { expect, test } from "vitest";
import { formatTimestamp, objectPath } from "../../core/index.ts";
import { useWorker, type TestWorker } from "./harness.ts";

/**
 * A resumable copy whose multipart upload disappears between runs (R2's lifecycle rule aborts incomplete
 * uploads after a day; here it is aborted by hand): the runs that find it gone fail visibly (the cron run
 * shows as failed), the third starts over, and the copy then completes byte-identical. Nothing shows the
 * set complete in the replica meanwhile.
 */
let w: TestWorker;
useWorker((started) => (w = started), { replica: true, bindings: { REPLICA_COPY_PART_MIB: "5", REPLICA_COPY_PARTS_PER_RUN: "1" } });

test("an upload lost between runs: failed runs, then a fresh upload, then a byte-identical copy", async () => {
  const set = `backups/full/${formatTimestamp(new Date(Date.now() - 60_000))}/`;
  const key = `${set}app.db.zst`;
  const data = createCipheriv("aes-256-ctr", Buffer.alloc(32, 5), Buffer.alloc(16)).update(Buffer.alloc(12 * 1024 * 1024 + 3));
  const headers = { "X-Server-Token": w.serverToken };
  expect((await fetch(`${w.url}${objectPath(key)}`, { method: "PUT", headers, body: data })).status).toBe(201);
  expect((await fetch(`${w.url}${objectPath(`${set}metadata.json`)}`, { method: "PUT", headers, body: "{}" })).status).toBe(201);
  const progressKey = `backups/state/replica-copy/${key.slice("backups/".length)}.json`;
  const progress = async () => {
    const p = await w.replicaBucket!.get(progressKey);
    return p === null ? null : ((await p.json()) as { uploadId: string; parts: unknown[]; failures?: number });
  };

  expect((await w.scheduled()).outcome).toBe("ok");
  const first = (await progress())!;
  expect(first.parts).toHaveLength(1);
  await w.replicaBucket!.resumeMultipartUpload(key, first.uploadId).abort();

  for (const failures of [1, 2]) {
    expect((await w.scheduled()).outcome).not.toBe("ok");
    expect(await progress()).toMatchObject({ uploadId: first.uploadId, failures });
  }
  expect((await w.scheduled()).outcome).not.toBe("ok");
  expect(await progress()).toBeNull(); // given up on: the next run starts a new upload
  expect(await w.replicaBucket!.head(`${set}metadata.json`)).toBeNull();

  for (let run = 0; run < 3; run++) expect((await w.scheduled()).outcome).toBe("ok");
  const copy = await w.replicaBucket!.get(key);
  const digest = createHash("sha256");
  for await (const chunk of copy!.body as unknown as AsyncIterable<Uint8Array>) digest.update(chunk);
  expect(digest.digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
  expect(await w.replicaBucket!.head(`${set}metadata.json`)).not.toBeNull();
  expect(await progress()).toBeNull();
});
