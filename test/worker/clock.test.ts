import { describe, expect, test } from "vitest";
import { MAX_CLOCK_SKEW_MS, formatDay, formatTimestamp, objectPath, type ApiError, type ApiPart } from "../../core/index.ts";
import { allKeys, useWorker, type TestWorker } from "./harness.ts";

/**
 * One clock (issue 13): the Worker refuses, on every write path, a key whose set id is more than
 * MAX_CLOCK_SKEW_MS after its own clock, so a stray future object cannot switch off the freshness alarm
 * and block the chain for the bucket lock's 7 days. Keys are built from this machine's clock, which is the
 * Worker's (Miniflare runs here).
 */
let w: TestWorker;
useWorker((started) => (w = started));

const headers = () => ({ "X-Server-Token": w.serverToken });
const tsIn = (ms: number) => formatTimestamp(new Date(Date.now() + ms));
const MINUTE = 60_000;

type Path = "put" | "form" | "create";
async function write(path: Path, key: string): Promise<Response> {
  if (path === "put") return fetch(`${w.url}${objectPath(key)}`, { method: "PUT", headers: headers(), body: "data" });
  if (path === "form") {
    const form = new FormData();
    form.append("file", new Blob(["data"]), key);
    return fetch(`${w.url}/api/upload-backup`, { method: "POST", headers: headers(), body: form });
  }
  return fetch(`${w.url}${objectPath(key)}?uploads`, { method: "POST", headers: headers() });
}

async function expectClockSkew(response: Response, key: string): Promise<void> {
  expect(response.status).toBe(400);
  const body = (await response.json()) as ApiError;
  expect(body.error).toBe("clock_skew");
  expect(body.message).toContain(`'${key}': `);
  expect(body.message).toContain("the job takes set ids from the Worker's clock; check the job machine's clock");
}

describe("a key from the future is refused on every write path", () => {
  const future = [
    `backups/full/99991231T235959Z/metadata.json`,
    `backups/full/${tsIn(60 * MINUTE)}/app.db.zst`,
    `backups/incremental/${tsIn(10 * MINUTE)}/changes.ndjson.zst`,
    `backups/incremental/99991231T235959Z/stray`,
    `backups/drills/${tsIn(24 * 60 * MINUTE)}.json`,
    `backups/daily/${formatDay(new Date(Date.now() + MAX_CLOCK_SKEW_MS + 24 * 60 * MINUTE))}/metadata.json`,
  ];
  for (const path of ["put", "form", "create"] as const) {
    test(`${path}: 400 clock_skew, nothing stored`, async () => {
      for (const key of future) await expectClockSkew(await write(path, key), key);
      expect(await allKeys(w.bucket)).toEqual([]);
    });
  }

  test("complete: an upload started before the rule (or by a skewed clock since) cannot be completed into the future", async () => {
    // The only way to hold an upload of a future key now is to start it in R2 directly.
    const key = "backups/full/99991231T235959Z/app.db.zst";
    const upload = await w.bucket.createMultipartUpload(key);
    const part = await upload.uploadPart(1, "data");
    const response = await fetch(`${w.url}${objectPath(key)}?uploadId=${encodeURIComponent(upload.uploadId)}`, {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({ parts: [{ partNumber: part.partNumber, etag: part.etag } satisfies ApiPart] }),
    });
    await expectClockSkew(response, key);
    expect(await w.bucket.head(key)).toBeNull();
    await upload.abort();
  });
});

describe("keys the Worker's clock allows", () => {
  test("a set id 1 minute ahead (within the skew), a past one, today's daily and backups/state/ are accepted on every path", async () => {
    // One base time and ten seconds apart per path: every key is new however long the loop takes.
    const base = Date.now();
    const tsAt = (ms: number) => formatTimestamp(new Date(base + ms));
    for (const [n, path] of (["put", "form", "create"] as const).entries()) {
      for (const key of [
        `backups/full/${tsAt(MINUTE + n * 10_000)}/app.db.zst`,
        `backups/incremental/${tsAt(-60 * MINUTE - n * 10_000)}/changes.ndjson.zst`,
        `backups/drills/${tsAt(-MINUTE - n * 10_000)}.json`,
        `backups/daily/${formatDay(new Date())}/${path}.db.zst`,
      ]) {
        const response = await write(path, key);
        expect(response.status, `${path} ${key}: ${await response.clone().text()}`).toBe(201);
      }
    }
    expect((await fetch(`${w.url}${objectPath("backups/state/99991231T235959Z")}`, { method: "PUT", headers: headers(), body: "x" })).status).toBe(201);
  });

  test("a multipart upload 1 minute ahead completes", async () => {
    const key = `backups/full/${tsIn(MINUTE)}/multi.db.zst`;
    const created = (await (await write("create", key)).json()) as { uploadId: string };
    const q = `${objectPath(key)}?uploadId=${encodeURIComponent(created.uploadId)}`;
    const part = (await (await fetch(`${w.url}${q}&partNumber=1`, { method: "PUT", headers: headers(), body: "data" })).json()) as ApiPart;
    expect((await fetch(`${w.url}${q}`, { method: "POST", headers: headers(), body: JSON.stringify({ parts: [part] }) })).status).toBe(201);
  });
});

test("GET /api/health answers the Worker's clock, without a token", async () => {
  const before = Date.now();
  const response = await fetch(`${w.url}/api/health`);
  expect(response.status).toBe(200);
  const body = (await response.json()) as { ok: boolean; service: string; now: string };
  expect(body).toMatchObject({ ok: true, service: "r2-sqlite-backup" });
  expect(body.now).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  // Same machine, same clock: the answer lies between the request and now (no timing bound on the Worker).
  expect(Date.parse(body.now)).toBeGreaterThanOrEqual(before - 1000);
  expect(Date.parse(body.now)).toBeLessThanOrEqual(Date.now() + 1000);
});
