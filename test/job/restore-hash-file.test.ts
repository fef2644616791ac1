import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { JobError } from "../../job/errors.ts";
import { hashFileOnThread } from "../../job/restore/hash-file.ts";

/** The worker-thread hash that restore uses for a decompressed database (job/restore/hash-file.ts). */
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "hash-file-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("hashFileOnThread", () => {
  it("answers the sha256 and size of a file larger than its read buffer", async () => {
    const bytes = randomBytes(3 * (1 << 20) + 12345);
    const path = join(dir, "data.bin");
    await writeFile(path, bytes);

    const got = await hashFileOnThread(path).done;

    expect(got).toEqual({ sha256: createHash("sha256").update(bytes).digest("hex"), bytes: bytes.length });
  });

  it("of an empty file answers the empty digest", async () => {
    const path = join(dir, "empty.bin");
    await writeFile(path, "");
    expect((await hashFileOnThread(path).done).sha256).toBe(createHash("sha256").digest("hex"));
  });

  it("of a missing file rejects with an error naming it", async () => {
    const path = join(dir, "missing.bin");
    const e = await hashFileOnThread(path).done.catch((err: unknown) => err);
    expect(e).toBeInstanceOf(JobError);
    expect((e as JobError).message).toContain(`hash file '${path}'`);
    expect((e as JobError).message).toContain("ENOENT");
  });

  it("when the thread cannot run, hashes the file on the calling thread instead", async () => {
    const bytes = randomBytes((1 << 20) + 7);
    const path = join(dir, "data.bin");
    await writeFile(path, bytes);
    const broken = join(dir, "broken-worker.mjs");
    await writeFile(broken, 'throw new Error("this thread cannot start");\n');
    for (const script of [broken, join(dir, "missing-worker.mjs")]) {
      const got = await hashFileOnThread(path, { worker: pathToFileURL(script) }).done;
      expect(got).toEqual({ sha256: createHash("sha256").update(bytes).digest("hex"), bytes: bytes.length });
    }
  });

  it("cancelled, stops the thread: it either had answered correctly or says it was cancelled", async () => {
    const bytes = randomBytes(1 << 20);
    const path = join(dir, "big.bin");
    await writeFile(path, bytes);
    const h = hashFileOnThread(path);
    await h.cancel();
    const outcome = await h.done.then(
      (r) => r.sha256,
      (err: unknown) => (err as Error).message,
    );
    const digest = createHash("sha256").update(bytes).digest("hex");
    expect(outcome).toSatisfy((o: string) => o === digest || /hash file '.*': cancelled/.test(o));
  });
});
