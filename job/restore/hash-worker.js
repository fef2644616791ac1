// @ts-check
// The body of `hashFileOnThread()` (hash-file.ts): a worker thread that reads one file and answers its sha256.
// Plain JavaScript on purpose: a .ts worker would load Node's TypeScript stripper a second time (~17 MiB
// of the restore's 200 MiB budget). Messages: { sha256, bytes } or { error, code }.
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";

const { path } = /** @type {{ path: string }} */ (workerData);
try {
  const hash = createHash("sha256");
  // One buffer, reused: the file is read through the page cache it was just written to. It starts on a page, where
  // the kernel copies into it ~3x faster: a WebAssembly memory, as job/aligned.ts explains (a .ts import here
  // would load the TypeScript stripper into this thread); a plain buffer where there is none (node --jitless).
  const wasm = /** @type {{ WebAssembly?: { Memory: new (d: { initial: number, maximum: number }) => { buffer: ArrayBuffer } } }} */ (/** @type {unknown} */ (globalThis))
    .WebAssembly;
  const buffer = (() => {
    try {
      if (wasm) return Buffer.from(new wasm.Memory({ initial: 16, maximum: 16 }).buffer);
    } catch {
      // no address space for it: a plain buffer
    }
    return Buffer.allocUnsafe(1 << 20);
  })();
  const fd = openSync(path, "r");
  let bytes = 0;
  try {
    for (let n; (n = readSync(fd, buffer, 0, buffer.length, null)) > 0; bytes += n) hash.update(buffer.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  parentPort?.postMessage({ sha256: hash.digest("hex"), bytes });
} catch (e) {
  const err = /** @type {NodeJS.ErrnoException} */ (e);
  parentPort?.postMessage({ error: err.message, code: err.code });
}
