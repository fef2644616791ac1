import { randomBytes } from "node:crypto";
import { readFile, readdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { BINDINGS, DEFAULT_PART_BYTES, MAX_PARTS_IN_FLIGHT, objectPath, type ApiPart } from "../core/index.ts";
import { startLocalWorker, type LocalWorker } from "../worker/local.ts";
import { round } from "./report.ts";

/**
 * The Worker's cost over bare R2, in Miniflare: upload (multipart, 16 MiB parts, 2 in flight, as the job
 * sends) and download throughput through the Worker over real HTTP, as a ratio to the same transfers
 * straight through the R2 binding (`mf.getR2Bucket()`), and the workerd process's peak memory while the
 * Worker streams `sizeBytes` (targets: ratio >= 0.8; memory flat, not growing with the object's size).
 *
 * Each phase runs in a fresh workerd over the same persisted local R2, so each peak is that phase's own.
 * Miniflare's R2 simulator runs inside that same workerd process (on Cloudflare it is a separate service),
 * so the direct phases' peaks are the floor the simulator sets by itself; the Worker's phases add to it.
 */
export async function benchWorker(options: { sizeBytes: number }): Promise<Record<string, unknown>> {
  const { sizeBytes } = options;
  const persistDir = fileURLToPath(new URL(`./tmp/worker-${process.pid}-${Date.now()}/`, import.meta.url));
  const part = randomBytes(DEFAULT_PART_BYTES); // reused for every part: the client costs next to nothing
  const viaWorker = "backups/full/20260101T000000Z/bench.db.zst";
  const direct = "backups/full/20260101T000000Z/direct.db.zst";
  const bucketOf = (worker: LocalWorker) => worker.mf.getR2Bucket(BINDINGS.bucket);
  try {
    const workerUpload = await phase(persistDir, (worker) => uploadThroughWorker(worker, viaWorker, sizeBytes, part).then(() => sizeBytes));
    const workerDownload = await phase(persistDir, (worker) => drain(fetchBody(worker, viaWorker)));
    const directUpload = await phase(persistDir, async (worker) => {
      await uploadDirect(await bucketOf(worker), direct, sizeBytes, part);
      return sizeBytes;
    });
    const directDownload = await phase(persistDir, async (worker) => {
      const object = await (await bucketOf(worker)).get(direct);
      if (!object) throw new Error("bench worker: the direct upload is missing");
      return drain(object.body as unknown as AsyncIterable<Uint8Array>);
    });
    if (workerDownload.bytes !== sizeBytes || directDownload.bytes !== sizeBytes) {
      throw new Error(`bench worker: downloaded ${workerDownload.bytes} and ${directDownload.bytes} bytes, expected ${sizeBytes}`);
    }
    const mbps = (ms: number) => round(sizeBytes / 1e6 / (ms / 1000));
    const row = (through: Phase, bare: Phase) => ({
      workerMBps: mbps(through.ms),
      directMBps: mbps(bare.ms),
      ratio: round(bare.ms / through.ms),
      workerPeakRssMiB: through.peakRssMiB,
      directPeakRssMiB: bare.peakRssMiB,
    });
    return {
      sizeBytes,
      partBytes: DEFAULT_PART_BYTES,
      partsInFlight: MAX_PARTS_IN_FLIGHT,
      idleRssMiB: workerUpload.idleRssMiB,
      upload: row(workerUpload, directUpload),
      download: row(workerDownload, directDownload),
      target: "ratio >= 0.8 each way; workerd peak RSS flat across sizes",
    };
  } finally {
    await rm(persistDir, { recursive: true, force: true });
  }
}

interface Phase {
  ms: number;
  bytes: number;
  idleRssMiB: number;
  peakRssMiB: number;
}

/** One transfer in a fresh workerd over `persistDir`: its time and workerd's idle and peak RSS. */
async function phase(persistDir: string, run: (worker: LocalWorker) => Promise<number>): Promise<Phase> {
  const worker = await startLocalWorker({ persistDir });
  try {
    const pid = await workerdPid();
    const idleRssMiB = (await readMemory(pid)).rssMiB;
    const sampler = sampleRss(pid);
    const { ms, value } = await timed(() => run(worker));
    const sampled = await sampler.stop();
    const peakRssMiB = Math.max(sampled, (await readMemory(pid)).hwmMiB);
    return { ms, bytes: value, idleRssMiB, peakRssMiB };
  } finally {
    await worker.stop();
  }
}

export async function timed<T>(run: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await run();
  return { ms: performance.now() - start, value };
}

/** The workerd child of this process (Miniflare spawns it); other processes' workerd are not ours. */
export async function workerdPid(): Promise<number> {
  const children = (await readFile(`/proc/${process.pid}/task/${process.pid}/children`, "utf8")).trim().split(/\s+/).filter(Boolean);
  for (const child of children) {
    const cmdline = await readFile(`/proc/${child}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes("workerd")) return Number(child);
  }
  // Threads other than the main one may have spawned it.
  for (const task of await readdir(`/proc/${process.pid}/task`)) {
    const kids = (await readFile(`/proc/${process.pid}/task/${task}/children`, "utf8").catch(() => "")).trim().split(/\s+/).filter(Boolean);
    for (const child of kids) {
      if ((await readFile(`/proc/${child}/cmdline`, "utf8").catch(() => "")).includes("workerd")) return Number(child);
    }
  }
  throw new Error("bench worker: no workerd child process found (is this Linux, with /proc?)");
}

/** VmRSS and VmHWM (the peak) of a process, in MiB. */
export async function readMemory(pid: number): Promise<{ rssMiB: number; hwmMiB: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rssMiB: round(kib("VmRSS") / 1024), hwmMiB: round(kib("VmHWM") / 1024) };
}

/** Polls VmRSS every 20 ms (a check on VmHWM, which the kernel keeps for the process's whole life). */
function sampleRss(pid: number): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, (await readMemory(pid)).rssMiB);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** Sends `total` bytes as parts of `part` (the last cut short), at most MAX_PARTS_IN_FLIGHT at once. */
async function inParts(total: number, part: Buffer, send: (partNumber: number, body: Buffer) => Promise<ApiPart>): Promise<ApiPart[]> {
  const parts: ApiPart[] = [];
  const inFlight = new Set<Promise<void>>();
  for (let offset = 0, n = 1; offset < total; offset += part.length, n++) {
    const body = part.subarray(0, Math.min(part.length, total - offset));
    const p: Promise<void> = send(n, body)
      .then((done) => void parts.push(done))
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= MAX_PARTS_IN_FLIGHT) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return parts.sort((a, b) => a.partNumber - b.partNumber);
}

export async function uploadThroughWorker(worker: LocalWorker, key: string, total: number, part: Buffer): Promise<void> {
  const headers = { "X-Server-Token": worker.bindings[BINDINGS.serverToken]! };
  const url = `${worker.url}${objectPath(key)}`;
  const created = await fetch(`${url}?uploads`, { method: "POST", headers });
  if (created.status !== 201) throw new Error(`bench worker: create upload: ${created.status} ${await created.text()}`);
  const { uploadId } = (await created.json()) as { uploadId: string };
  const base = `${url}?uploadId=${encodeURIComponent(uploadId)}`;
  const parts = await inParts(total, part, async (n, body) => {
    const response = await fetch(`${base}&partNumber=${n}`, { method: "PUT", headers, body });
    if (response.status !== 200) throw new Error(`bench worker: part ${n}: ${response.status} ${await response.text()}`);
    return (await response.json()) as ApiPart;
  });
  const done = await fetch(base, { method: "POST", headers, body: JSON.stringify({ parts }) });
  if (done.status !== 201) throw new Error(`bench worker: complete: ${done.status} ${await done.text()}`);
}

type Bucket = Awaited<ReturnType<LocalWorker["mf"]["getR2Bucket"]>>;

async function uploadDirect(bucket: Bucket, key: string, total: number, part: Buffer): Promise<void> {
  const upload = await bucket.createMultipartUpload(key);
  const parts = await inParts(total, part, async (n, body) => {
    const done = await upload.uploadPart(n, body);
    return { partNumber: done.partNumber, etag: done.etag };
  });
  await upload.complete(parts);
}

export async function fetchBody(worker: LocalWorker, key: string): Promise<AsyncIterable<Uint8Array>> {
  const response = await fetch(`${worker.url}${objectPath(key)}`, { headers: { "X-Server-Token": worker.bindings[BINDINGS.serverToken]! } });
  if (response.status !== 200 || !response.body) throw new Error(`bench worker: download: ${response.status}`);
  return response.body as AsyncIterable<Uint8Array>;
}

export async function drain(body: AsyncIterable<Uint8Array> | Promise<AsyncIterable<Uint8Array>>): Promise<number> {
  let bytes = 0;
  for await (const chunk of await body) bytes += chunk.length;
  return bytes;
}

// `node bench/worker.ts [size-in-MiB ...]`: prints the results as JSON (default: 100 MiB and 1 GiB).
if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = process.argv.slice(2).map((s) => Number(s) * 1024 * 1024);
  const results = [];
  for (const sizeBytes of sizes.length ? sizes : [100 * 1024 * 1024, 1024 * 1024 * 1024]) results.push(await benchWorker({ sizeBytes }));
  console.log(JSON.stringify(results, null, 2));
}
