import { createHash } from "node:crypto";
import { request as httpRequest } from "node:http";
import { describe, expect, test } from "vitest";
import { objectPath, type ApiError, type ApiPart } from "../../core/index.ts";
import { allKeys, useWorker, type TestWorker } from "./harness.ts";

/**
 * Write-once under concurrency (issue 13): of N writers racing to one new key, by single PUT, form upload
 * or multipart completion in any mix, exactly one gets 201, every other a 409, and the stored bytes are the
 * winner's. R2's complete() takes no condition, so this holds only through the Worker's per-key claim.
 */
let w: TestWorker;
useWorker((started) => (w = started));

const WRITERS = 16;
/** Big enough that a PUT is still streaming while the other writers arrive. */
const BODY_BYTES = 256 * 1024;
const ROUNDS = 5;
const sha256 = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");
const headers = () => ({ "X-Server-Token": w.serverToken });

type Path = "put" | "form" | "complete";
interface Writer {
  path: Path;
  body: string;
  /** Sends the racing request; multipart writers have already created their upload and sent their part. */
  go(): Promise<Response>;
}

async function putWriter(key: string, body: string): Promise<Writer> {
  return { path: "put", body, go: () => fetch(`${w.url}${objectPath(key)}`, { method: "PUT", headers: headers(), body }) };
}

async function formWriter(key: string, body: string): Promise<Writer> {
  return {
    path: "form",
    body,
    go: () => {
      const form = new FormData();
      form.append("file", new Blob([body]), key);
      return fetch(`${w.url}/api/upload-backup`, { method: "POST", headers: headers(), body: form });
    },
  };
}

/** A multipart upload of `key` with one (last, so any size) part holding `body`, ready to complete. */
async function completeWriter(key: string, body: string): Promise<Writer> {
  const created = await fetch(`${w.url}${objectPath(key)}?uploads`, { method: "POST", headers: headers() });
  expect(created.status).toBe(201);
  const { uploadId } = (await created.json()) as { uploadId: string };
  const q = (extra = "") => `${objectPath(key)}?uploadId=${encodeURIComponent(uploadId)}${extra}`;
  const sent = await fetch(`${w.url}${q("&partNumber=1")}`, { method: "PUT", headers: headers(), body });
  expect(sent.status).toBe(200);
  const part = (await sent.json()) as ApiPart;
  return { path: "complete", body, go: () => fetch(`${w.url}${q()}`, { method: "POST", headers: headers(), body: JSON.stringify({ parts: [part] }) }) };
}

const MAKERS: Record<Path, (key: string, body: string) => Promise<Writer>> = { put: putWriter, form: formWriter, complete: completeWriter };

/** Races `paths` (one writer each) to `key`; checks one 201, the rest 409, and that the stored bytes are the winner's. */
async function race(key: string, paths: Path[]): Promise<{ statuses: number[]; messages: string[] }> {
  const writers = await Promise.all(paths.map((path, i) => MAKERS[path](key, `${path} writer ${i} of ${key}: ${"x".repeat(BODY_BYTES + i)}`)));
  const responses = await Promise.all(writers.map((writer) => writer.go()));
  const statuses = responses.map((r) => r.status);
  const texts = await Promise.all(responses.map((r) => r.text()));
  const winners = writers.filter((_, i) => statuses[i] === 201);
  const messages = texts.filter((_, i) => statuses[i] !== 201).map((t) => (JSON.parse(t) as ApiError).message);
  expect(
    winners.map((x) => x.path),
    `statuses ${statuses.join(",")}`,
  ).toHaveLength(1);
  expect(
    statuses.filter((s) => s !== 201).every((s) => s === 409),
    `statuses ${statuses.join(",")}`,
  ).toBe(true);
  const stored = await fetch(`${w.url}${objectPath(key)}`, { headers: headers() });
  expect(stored.status).toBe(200);
  expect(sha256(new Uint8Array(await stored.arrayBuffer()))).toBe(sha256(winners[0]!.body));
  return { statuses, messages };
}

/** 4 PUTs, 4 forms, 8 completions, interleaved: the completions (the unconditional path) are the most. */
const MIXED: Path[] = Array.from({ length: WRITERS }, (_, i) => (["put", "complete", "form", "complete"] as const)[i % 4]!);

describe(`${WRITERS} concurrent writers to one new key: exactly one 201, the rest 409, the winner's bytes stored`, () => {
  for (const [name, paths] of [
    ["single PUTs", Array<Path>(WRITERS).fill("put")],
    ["form uploads", Array<Path>(WRITERS).fill("form")],
    ["multipart completions of different uploads", Array<Path>(WRITERS).fill("complete")],
    ["a mix of PUTs, forms and completions", MIXED],
  ] as const) {
    test(name, async () => {
      for (let round = 0; round < ROUNDS; round++) {
        const key = `backups/full/20260301T00000${round}Z/${name.replace(/\W+/g, "-")}.db.zst`;
        const { messages } = await race(key, [...paths]);
        for (const message of messages) expect(message).toContain(key);
      }
    });
  }

  test("no claim is left behind once the writes are done", async () => {
    expect((await w.bucket.list({ prefix: ".claims/" })).objects).toEqual([]);
  });

  test("backups/state/ stays overwritable and takes no claim: every concurrent write succeeds", async () => {
    const key = "backups/state/race-pointer";
    const responses = await Promise.all(Array.from({ length: 8 }, (_, i) => fetch(`${w.url}${objectPath(key)}`, { method: "PUT", headers: headers(), body: `v${i}` })));
    expect(responses.map((r) => r.status)).toEqual(Array(8).fill(201));
    expect(await allKeys(w.bucket, key)).toEqual([key]);
  });
});

describe("the claim of a key", () => {
  const claimKeyOf = (key: string) => `.claims/${sha256(key)}`;
  const claim = (key: string, takenAt: Date, owner = "a-worker-that-died") =>
    w.bucket.put(claimKeyOf(key), JSON.stringify({ key, owner, takenAt }), { customMetadata: { key, owner, takenAt: takenAt.toISOString() } });
  const put = (key: string, body: string) => fetch(`${w.url}${objectPath(key)}`, { method: "PUT", headers: headers(), body });

  test("Miniflare's R2 makes the claim's two primitives atomic: create-only (etagDoesNotMatch '*') and compare-and-swap (etagMatches)", async () => {
    const key = ".claims/primitive-check";
    const first = await w.bucket.put(key, "one", { onlyIf: { etagDoesNotMatch: "*" } });
    expect(first).not.toBeNull();
    expect(await w.bucket.put(key, "two", { onlyIf: { etagDoesNotMatch: "*" } })).toBeNull();
    const swapped = await w.bucket.put(key, "three", { onlyIf: { etagMatches: first!.etag } });
    expect(swapped).not.toBeNull();
    expect(await w.bucket.put(key, "four", { onlyIf: { etagMatches: first!.etag } })).toBeNull();
    expect(await (await w.bucket.get(key))!.text()).toBe("three");
    await w.bucket.delete(key);
  });

  test("a stale claim (left by a Worker that died) is taken over: the write succeeds and no claim remains", async () => {
    const stale = new Date(Date.now() - 16 * 60 * 1000);
    const key = "backups/full/20260302T000000Z/stale.db.zst";
    await claim(key, stale);
    expect((await put(key, "after a dead worker")).status).toBe(201);
    expect(await (await w.bucket.get(key))!.text()).toBe("after a dead worker");
    expect(await w.bucket.head(claimKeyOf(key))).toBeNull();

    const multi = "backups/full/20260302T000000Z/stale-multi.db.zst";
    const writer = await completeWriter(multi, "completed after a dead worker");
    await claim(multi, stale);
    expect((await writer.go()).status).toBe(201);
    expect(await (await w.bucket.get(multi))!.text()).toBe("completed after a dead worker");
    expect(await w.bucket.head(claimKeyOf(multi))).toBeNull();
  });

  test("a live claim is a 409 on every path that says another upload is in progress, and nothing is written", async () => {
    const key = "backups/full/20260302T000000Z/live.db.zst";
    const writers = [await putWriter(key, "put"), await formWriter(key, "form"), await completeWriter(key, "complete")];
    await claim(key, new Date(), "a-writer-still-at-work");
    for (const writer of writers) {
      const response = await writer.go();
      expect(response.status, writer.path).toBe(409);
      const body = (await response.json()) as ApiError;
      expect(body.error).toBe("write_in_progress");
      expect(body.message).toContain(`write backup key '${key}': another upload of this key is in progress`);
      expect(body.message).toContain("the key does not exist yet");
    }
    expect(await w.bucket.head(key)).toBeNull();
    // The claim is the live writer's: nobody else released it.
    expect(await w.bucket.head(claimKeyOf(key))).not.toBeNull();
    await w.bucket.delete(claimKeyOf(key));
    expect((await writers[0]!.go()).status).toBe(201);
  });

  test("a live claim on a key that exists says so", async () => {
    const key = "backups/full/20260302T000000Z/exists.db.zst";
    expect((await put(key, "first")).status).toBe(201);
    await claim(key, new Date());
    const body = (await (await put(key, "second")).json()) as ApiError;
    expect(body.message).toContain("the key exists already");
    await w.bucket.delete(claimKeyOf(key));
  });

  test("a PUT cut off mid-body releases its claim, so a retry succeeds", async () => {
    const key = "backups/full/20260302T000000Z/cut.db.zst";
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${w.url}${objectPath(key)}`, { method: "PUT", headers: { ...headers(), "Content-Length": "1000000" } });
      req.on("error", () => resolve());
      req.on("close", () => resolve());
      req.write(Buffer.alloc(1000, 1), () => setTimeout(() => req.destroy(), 200));
    });
    // Wait (bounded) for the Worker to notice the client left and give up the write.
    for (let i = 0; i < 50 && (await w.bucket.head(claimKeyOf(key))) !== null; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await w.bucket.head(claimKeyOf(key))).toBeNull();
    expect(await w.bucket.head(key)).toBeNull();
    expect((await put(key, "retried")).status).toBe(201);
  });
});
