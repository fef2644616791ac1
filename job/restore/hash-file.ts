import { Worker } from "node:worker_threads";
import { JobError } from "../errors.ts";

/**
 * The sha256 of a file, computed on a worker thread. Restore hashes the decompressed database this way
 * after it is written, so the hashing runs beside the integrity check on a second core instead of on the
 * main thread while the download is still competing for CPU (bench: restore at 1 GiB).
 */
export interface FileHash {
  /** Resolves with the digest and the bytes read; rejects with a JobError when the file cannot be read. */
  done: Promise<{ sha256: string; bytes: number }>;
  /** Stops the thread (on another failure); safe after `done` settled. */
  cancel(): Promise<void>;
}

const WORKER = new URL("./hash-worker.js", import.meta.url);

/** Starts hashing `path` on a worker thread. `done` is already marked handled: await it to see a failure. */
export function hashFile(path: string): FileHash {
  // Small heap limits: the thread holds one 1 MiB buffer, and every MiB counts against the restore's RSS target.
  const worker = new Worker(WORKER, { workerData: { path }, resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 } });
  const done = new Promise<{ sha256: string; bytes: number }>((resolve, reject) => {
    worker.once("message", (m: { sha256?: string; bytes?: number; error?: string; code?: string }) => {
      if (m.sha256 !== undefined) resolve({ sha256: m.sha256, bytes: m.bytes ?? 0 });
      else reject(new JobError("failed", `hash file '${path}': ${m.error ?? "unknown error"}`, { hint: "check the temporary file's disk" }));
    });
    worker.once("error", (e) => reject(new JobError("failed", `hash file '${path}': the hashing thread failed: ${e.message}`, { cause: e })));
    worker.once("exit", (code) => reject(new JobError("failed", `hash file '${path}': the hashing thread exited (${code}) without an answer`)));
  });
  done.catch(() => {}).finally(() => void worker.terminate());
  return { done, cancel: async () => void (await worker.terminate()) };
}
