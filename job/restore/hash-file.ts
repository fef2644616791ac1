import { Worker } from "node:worker_threads";
import { JobError } from "../errors.ts";
import { hashFile } from "../stream.ts";

/**
 * The sha256 of a file, computed on a worker thread. Restore hashes the decompressed database this way
 * after it is written, so the hashing runs beside the integrity check on a second core instead of on the
 * main thread while the download is still competing for CPU (bench: restore at 1 GiB). A thread that
 * cannot run (a preload from NODE_OPTIONS that outgrows its heap, a crash) only costs that overlap: the
 * file is then hashed on this thread.
 */
export interface FileHash {
  /** Resolves with the digest and the bytes read; rejects with a JobError when the file cannot be read. */
  done: Promise<{ sha256: string; bytes: number }>;
  /** Stops the thread (on another failure); safe after `done` settled. */
  cancel(): Promise<void>;
}

const WORKER = new URL("./hash-worker.js", import.meta.url);

async function hashHere(path: string): Promise<{ sha256: string; bytes: number }> {
  try {
    const { sha256, size } = await hashFile(path);
    return { sha256, bytes: size };
  } catch (e) {
    throw new JobError("failed", `hash file '${path}': ${(e as Error).message}`, { hint: "check the temporary file's disk", cause: e });
  }
}

/**
 * Starts hashing `path` on a worker thread. `done` is already marked handled: await it to see a failure.
 * `worker` replaces the thread's script (tests use it to make the thread fail).
 */
export function hashFileOnThread(path: string, options: { worker?: URL } = {}): FileHash {
  let cancelled = false;
  // Small heap limits: the thread holds one 1 MiB buffer, and every MiB counts against the restore's RSS
  // target. No execArgv: the main thread's flags (a profiler, a loader) are not the hashing thread's business.
  const worker = new Worker(options.worker ?? WORKER, { workerData: { path }, execArgv: [], resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 } });
  const done = new Promise<{ sha256: string; bytes: number }>((resolve, reject) => {
    let answered = false;
    const fallBack = () => {
      if (answered) return; // the thread's answer came first (exit always follows it)
      answered = true;
      if (cancelled) reject(new JobError("failed", `hash file '${path}': cancelled`));
      else hashHere(path).then(resolve, reject);
    };
    worker.once("message", (m: { sha256?: string; bytes?: number; error?: string; code?: string }) => {
      answered = true;
      if (m.sha256 !== undefined) resolve({ sha256: m.sha256, bytes: m.bytes ?? 0 });
      else reject(new JobError("failed", `hash file '${path}': ${m.error ?? "unknown error"}`, { hint: "check the temporary file's disk" }));
    });
    worker.once("error", fallBack);
    worker.once("exit", fallBack);
  });
  done.catch(() => {}).finally(() => void worker.terminate());
  return {
    done,
    cancel: async () => {
      cancelled = true;
      await worker.terminate();
    },
  };
}
