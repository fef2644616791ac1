import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { BINDINGS } from "../core/index.ts";
import { startLocalWorker } from "../worker/local.ts";
import { drain, timed } from "./worker.ts";

/**
 * How fast Miniflare's local R2 serves one object stored in one piece against the same bytes stored as a
 * multipart upload (5 MiB parts, as the job sends), straight through the R2 binding: the floor under every
 * restore the bench times through the local Worker. `npm exec -- node bench/r2-get.ts [MiB, default 90]`.
 */
const mib = Number(process.argv[2] ?? 90);
const total = mib * 1024 * 1024;
const part = 5 * 1024 * 1024;
const persistDir = fileURLToPath(new URL(`./tmp/r2-get-${process.pid}/`, import.meta.url));
const worker = await startLocalWorker({ persistDir });
try {
  const bucket = await worker.mf.getR2Bucket(BINDINGS.bucket);
  const data = randomBytes(total);
  await bucket.put("single", data);
  const upload = await bucket.createMultipartUpload("multipart");
  const parts = [];
  for (let at = 0, n = 1; at < total; at += part, n++) parts.push(await upload.uploadPart(n, data.subarray(at, Math.min(total, at + part))));
  await upload.complete(parts);
  for (const key of ["single", "multipart", "single", "multipart"]) {
    const { ms, value } = await timed(async () => drain((await bucket.get(key))!.body as unknown as AsyncIterable<Uint8Array>));
    if (value !== total) throw new Error(`bench r2-get: read ${value} of ${total} bytes`);
    console.log(`${key.padEnd(9)} ${mib} MiB in ${(ms / 1000).toFixed(2)} s: ${(total / 1e6 / (ms / 1000)).toFixed(1)} MB/s`);
  }
} finally {
  await worker.stop();
  await rm(persistDir, { recursive: true, force: true });
}
