import { createHash } from "node:crypto";
import { request as httpRequest } from "node:http";
import { beforeAll, describe, expect, test } from "vitest";
import { MAX_FORM_UPLOAD_BYTES, MAX_SINGLE_PUT_BYTES, objectPath, type ApiError, type ApiListing, type ApiObject } from "../../core/index.ts";
import { allKeys, rawRequest, startWorker, useWorker, type TestWorker } from "./harness.ts";

let w: TestWorker;
/** Every error body seen, to check none of them leaks a token or a stack trace. */
const errorBodies: string[] = [];

useWorker((started) => (w = started));

type Who = "server" | "admin" | "none" | string;
function tokenHeaders(who: Who): Record<string, string> {
  if (who === "none") return {};
  const token = who === "server" ? w.serverToken : who === "admin" ? w.adminToken : who;
  return { "X-Server-Token": token };
}

async function api(path: string, init: RequestInit & { who?: Who } = {}): Promise<Response> {
  const { who = "server", headers, ...rest } = init;
  const response = await fetch(`${w.url}${path}`, { ...rest, headers: { ...tokenHeaders(who), ...(headers as Record<string, string>) } });
  if (response.status >= 400 && init.method !== "HEAD") errorBodies.push(await response.clone().text());
  return response;
}

async function expectError(response: Response, status: number, code?: string): Promise<ApiError> {
  expect(response.status).toBe(status);
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  const body = (await response.json()) as ApiError;
  expect(Object.keys(body).sort()).toEqual(["error", "message"]);
  if (code) expect(body.error).toBe(code);
  expect(body.message.length).toBeGreaterThan(0);
  return body;
}

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const FULL = "backups/full/20260101T000000Z";

describe("health and auth", () => {
  test("GET /api/health answers without a token", async () => {
    const response = await api("/api/health", { who: "none" });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ ok: true });
  });

  test("a missing token is 401", async () => {
    await expectError(await api("/api/backups", { who: "none" }), 401, "unauthorized");
  });

  test("a wrong token is 401, in either header", async () => {
    await expectError(await api("/api/status", { who: "wrong-token" }), 401, "unauthorized");
    const bearer = await fetch(`${w.url}/api/status`, { headers: { Authorization: "Bearer wrong-token" } });
    await expectError(bearer, 401, "unauthorized");
  });

  test("Authorization: Bearer with the job's token is accepted", async () => {
    const response = await fetch(`${w.url}/api/backups`, { headers: { Authorization: `Bearer ${w.serverToken}` } });
    expect(response.status).toBe(200);
  });

  test("a token that is a prefix or an extension of the real one is refused", async () => {
    await expectError(await api("/api/backups", { who: w.serverToken.slice(0, -1) }), 401);
    await expectError(await api("/api/backups", { who: `${w.serverToken}x` }), 401);
  });

  test("a wrong token never writes anything", async () => {
    const key = `${FULL}/wrong.db.zst`;
    const before = await allKeys(w.bucket);
    for (const who of ["none", "wrong-token"]) {
      await expectError(await api(objectPath(key), { method: "PUT", who, body: "data" }), 401);
      await expectError(await api(objectPath("backups/state/latest"), { method: "PUT", who, body: "data" }), 401);
      await expectError(await api(`${objectPath(key)}?uploads`, { method: "POST", who }), 401);
      const form = new FormData();
      form.append("file", new Blob(["data"]), key);
      await expectError(await api("/api/upload-backup", { method: "POST", who, body: form }), 401);
    }
    expect(await allKeys(w.bucket)).toEqual(before);
  });

  test("a wrong token never deletes anything", async () => {
    const key = `${FULL}/keep.db.zst`;
    expect((await api(objectPath(key), { method: "PUT", body: "keep" })).status).toBe(201);
    await expectError(await api(objectPath(key), { method: "DELETE", who: "wrong-token" }), 401);
    expect(await w.bucket.head(key)).not.toBeNull();
  });

  test("an unknown path under /api is 404 and a wrong method 405, both JSON", async () => {
    await expectError(await api("/api/nothing-here"), 404, "not_found");
    await expectError(await api("/elsewhere"), 404, "not_found");
    const response = await api("/api/status", { method: "POST" });
    expect(response.headers.get("allow")).toContain("GET");
    await expectError(response, 405);
  });
});

describe("rotating the job's token (SERVER_BYPASS_TOKEN_PREVIOUS)", () => {
  test("while the previous token is bound it works as the job's (read, write, never delete); once unbound it is refused", async () => {
    const rotating = await startWorker({ bindings: { SERVER_BYPASS_TOKEN: "new-job-token", SERVER_BYPASS_TOKEN_PREVIOUS: "old-job-token" } });
    try {
      for (const token of ["new-job-token", "old-job-token"]) {
        const put = await fetch(`${rotating.url}${objectPath(`${FULL}/${token}.db.zst`)}`, { method: "PUT", headers: { "X-Server-Token": token }, body: "x" });
        expect(put.status).toBe(201);
        expect((await fetch(`${rotating.url}/api/backups?prefix=backups/`, { headers: { Authorization: `Bearer ${token}` } })).status).toBe(200);
      }
      const del = await fetch(`${rotating.url}${objectPath(`${FULL}/old-job-token.db.zst`)}`, { method: "DELETE", headers: { "X-Server-Token": "old-job-token" } });
      await expectError(del, 403, "forbidden");
      expect((await fetch(`${rotating.url}/api/backups`, { headers: { "X-Server-Token": "older-still" } })).status).toBe(401);
    } finally {
      await rotating.stop();
    }
    const done = await startWorker({ bindings: { SERVER_BYPASS_TOKEN: "new-job-token" } });
    try {
      await expectError(await fetch(`${done.url}/api/backups`, { headers: { "X-Server-Token": "old-job-token" } }), 401, "unauthorized");
      // An empty previous secret never matches an empty token.
      const empty = await startWorker({ bindings: { SERVER_BYPASS_TOKEN: "new-job-token", SERVER_BYPASS_TOKEN_PREVIOUS: "" } });
      try {
        expect((await fetch(`${empty.url}/api/backups`, { headers: { Authorization: "Bearer " } })).status).toBe(401);
      } finally {
        await empty.stop();
      }
    } finally {
      await done.stop();
    }
  });
});

describe("a secret that is not bound", () => {
  test("is a 500 that names the secret and never shows the other token", async () => {
    const partial = await startWorker({ bindings: { ADMIN_TOKEN: undefined } });
    try {
      const response = await fetch(`${partial.url}/api/backups`, { headers: { "X-Server-Token": partial.serverToken } });
      const body = await expectError(response, 500, "misconfigured");
      expect(body.message).toContain("ADMIN_TOKEN");
      expect(body.message).not.toContain(partial.serverToken);
      const write = await fetch(`${partial.url}${objectPath(`${FULL}/x.db.zst`)}`, { method: "PUT", headers: { "X-Server-Token": partial.serverToken }, body: "x" });
      await expectError(write, 500);
      expect(await allKeys(partial.bucket)).toEqual([]);
    } finally {
      await partial.stop();
    }
  });

  test("with no token secret at all, the 500 names both and nothing is written", async () => {
    const bare = await startWorker({ bindings: { ADMIN_TOKEN: undefined, SERVER_BYPASS_TOKEN: undefined } });
    try {
      const response = await fetch(`${bare.url}${objectPath(`${FULL}/x.db.zst`)}`, { method: "PUT", headers: { "X-Server-Token": "anything" }, body: "x" });
      const body = await expectError(response, 500, "misconfigured");
      expect(body.message).toContain("ADMIN_TOKEN");
      expect(body.message).toContain("SERVER_BYPASS_TOKEN");
      expect(await allKeys(bare.bucket)).toEqual([]);
    } finally {
      await bare.stop();
    }
  });

  test("a MAX_BACKUP_AGE_HOURS that is not a number is a 500 naming it", async () => {
    const bad = await startWorker({ bindings: { MAX_BACKUP_AGE_HOURS: "soon" } });
    try {
      const response = await fetch(`${bad.url}/api/status`, { headers: { "X-Server-Token": bad.serverToken } });
      expect((await expectError(response, 500, "misconfigured")).message).toContain("MAX_BACKUP_AGE_HOURS");
    } finally {
      await bad.stop();
    }
  });
});

describe("PUT and GET of one object", () => {
  const key = `${FULL}/app.db.zst`;
  const data = Buffer.from(`${"x".repeat(1000)}the end`);

  test("PUT stores the body, with the sha256 R2 checked, and answers the object", async () => {
    const response = await api(objectPath(key), { method: "PUT", body: data, headers: { "X-Content-SHA256": sha256(data) } });
    expect(response.status).toBe(201);
    const object = (await response.json()) as ApiObject;
    expect(object).toMatchObject({ key, size: data.length, sha256: sha256(data) });
    const stored = await w.bucket.get(key);
    expect(Buffer.from(await stored!.arrayBuffer()).equals(data)).toBe(true);
  });

  test("GET streams it back with its length, etag and sha256", async () => {
    const response = await api(objectPath(key));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe(String(data.length));
    expect(response.headers.get("etag")).toMatch(/^".+"$/);
    expect(response.headers.get("x-content-sha256")).toBe(sha256(data));
    expect(Buffer.from(await response.arrayBuffer()).equals(data)).toBe(true);
  });

  test("HEAD answers the headers only", async () => {
    const response = await api(objectPath(key), { method: "HEAD" });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe(String(data.length));
    expect(response.headers.get("accept-ranges")).toBe("bytes");
    expect(await response.text()).toBe("");
    expect((await api(objectPath(`${FULL}/missing.db.zst`), { method: "HEAD" })).status).toBe(404);
  });

  test("Range answers 206 with Content-Range, for a span, an open end and a suffix", async () => {
    const span = await api(objectPath(key), { headers: { Range: "bytes=10-19" } });
    expect(span.status).toBe(206);
    expect(span.headers.get("content-range")).toBe(`bytes 10-19/${data.length}`);
    expect(Buffer.from(await span.arrayBuffer()).equals(data.subarray(10, 20))).toBe(true);
    const open = await api(objectPath(key), { headers: { Range: "bytes=1000-" } });
    expect(open.status).toBe(206);
    expect(await open.text()).toBe("the end");
    const suffix = await api(objectPath(key), { headers: { Range: "bytes=-3" } });
    expect(suffix.status).toBe(206);
    expect(await suffix.text()).toBe("end");
  });

  test("a Range past the end is 416 with the size", async () => {
    const response = await api(objectPath(key), { headers: { Range: `bytes=${data.length}-` } });
    expect(response.headers.get("content-range")).toBe(`bytes */${data.length}`);
    await expectError(response, 416, "range_not_satisfiable");
  });

  test("an existing key is never overwritten: 409, and the object is unchanged", async () => {
    await expectError(await api(objectPath(key), { method: "PUT", body: "other" }), 409, "conflict");
    const stored = await w.bucket.get(key);
    expect(Buffer.from(await stored!.arrayBuffer()).equals(data)).toBe(true);
  });

  test("backups/state/ is the one place a key may be overwritten", async () => {
    const state = "backups/state/latest";
    expect((await api(objectPath(state), { method: "PUT", body: "one" })).status).toBe(201);
    expect((await api(objectPath(state), { method: "PUT", body: "two" })).status).toBe(201);
    expect(await (await api(objectPath(state))).text()).toBe("two");
  });

  test("a missing object is 404 JSON", async () => {
    await expectError(await api(objectPath(`${FULL}/missing.db.zst`)), 404, "not_found");
  });

  test("a body that does not match X-Content-SHA256 is refused and nothing is stored", async () => {
    const bad = `${FULL}/corrupt.db.zst`;
    await expectError(await api(objectPath(bad), { method: "PUT", body: "payload", headers: { "X-Content-SHA256": sha256("other") } }), 400, "checksum_mismatch");
    expect(await w.bucket.head(bad)).toBeNull();
  });

  test("an X-Content-SHA256 that is not 64 hex digits is 400", async () => {
    const bad = `${FULL}/badsha.db.zst`;
    await expectError(await api(objectPath(bad), { method: "PUT", body: "payload", headers: { "X-Content-SHA256": "abc" } }), 400);
    expect(await w.bucket.head(bad)).toBeNull();
  });

  test("keys outside the layout are 400", async () => {
    for (const path of [
      "/api/backups/other/x",
      "/api/backups/backups/full/a%5Cb",
      "/api/backups/backups/full/a%2F..%2F..%2Fb",
      "/api/backups/backups/state/%2E%2E%2Fx",
      "/api/backups/backups/full//x",
      "/api/backups/backups/full/%E0%A4%A",
      `/api/backups/backups/state/${"k".repeat(600)}`,
    ]) {
      const response = await api(path, { method: "PUT", body: "x" });
      expect(response.status, path).toBe(400);
      await expectError(response, 400);
    }
    expect(await allKeys(w.bucket, "backups/full/a")).toEqual([]);
  });

  test("a PUT without Content-Length (chunked) is 411 and stores nothing", async () => {
    const bad = `${FULL}/chunked.db.zst`;
    const response = await rawRequest(`${w.url}${objectPath(bad)}`, { method: "PUT", headers: tokenHeaders("server"), chunked: true });
    expect(response.status).toBe(411);
    expect(JSON.parse(response.body)).toMatchObject({ error: "length_required" });
    expect(await w.bucket.head(bad)).toBeNull();
  });

  test("a PUT over the single-request limit is 413 before its body is read", async () => {
    const big = `${FULL}/big.db.zst`;
    const response = await rawRequest(`${w.url}${objectPath(big)}`, {
      method: "PUT",
      headers: { ...tokenHeaders("server"), "Content-Length": String(MAX_SINGLE_PUT_BYTES + 1) },
    });
    expect(response.status).toBe(413);
    expect(JSON.parse(response.body)).toMatchObject({ error: "payload_too_large" });
    expect(await w.bucket.head(big)).toBeNull();
  });

  test("an upload cut off mid-body stores nothing", async () => {
    const cut = `${FULL}/cut.db.zst`;
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${w.url}${objectPath(cut)}`, { method: "PUT", headers: { ...tokenHeaders("server"), "Content-Length": "1000000" } });
      req.on("error", () => resolve());
      req.write(Buffer.alloc(1000, 1), () => setTimeout(() => req.destroy(), 200));
      req.on("close", () => resolve());
    });
    // The Worker sees the client go away; give it a moment to fail the R2 put.
    await new Promise((r) => setTimeout(r, 500));
    expect(await w.bucket.head(cut)).toBeNull();
    expect(await allKeys(w.bucket, cut)).toEqual([]);
  });

  test("an empty object can be stored", async () => {
    const empty = `${FULL}/empty.db.zst`;
    expect((await api(objectPath(empty), { method: "PUT", body: Buffer.alloc(0) })).status).toBe(201);
    expect((await api(objectPath(empty))).headers.get("content-length")).toBe("0");
  });
});

describe("DELETE", () => {
  const key = "backups/drills/20260101T000000Z.json";
  beforeAll(async () => {
    expect((await api(objectPath(key), { method: "PUT", body: "{}" })).status).toBe(201);
  });

  test("the job's token may not delete: 403, and the object stays", async () => {
    await expectError(await api(objectPath(key), { method: "DELETE" }), 403, "forbidden");
    expect(await w.bucket.head(key)).not.toBeNull();
  });

  test("ADMIN_TOKEN deletes, then the key is 404", async () => {
    expect((await api(objectPath(key), { method: "DELETE", who: "admin" })).status).toBe(204);
    expect(await w.bucket.head(key)).toBeNull();
    await expectError(await api(objectPath(key), { method: "DELETE", who: "admin" }), 404);
  });
});

describe("the seed's form upload", () => {
  test("POST /api/upload-backup stores the file under its filename, once", async () => {
    const key = "backups/full/20260102T000000Z/metadata.json";
    const form = () => {
      const f = new FormData();
      f.append("file", new Blob(['{"seed":true}']), key);
      return f;
    };
    const response = await api("/api/upload-backup", { method: "POST", body: form() });
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ key, size: 13 });
    expect(await (await w.bucket.get(key))!.text()).toBe('{"seed":true}');
    await expectError(await api("/api/upload-backup", { method: "POST", body: form() }), 409);
  });

  test("a form with a bad filename or no file is 400", async () => {
    const f = new FormData();
    f.append("file", new Blob(["x"]), "../../etc/passwd");
    await expectError(await api("/api/upload-backup", { method: "POST", body: f }), 400);
    const g = new FormData();
    g.append("other", "x");
    await expectError(await api("/api/upload-backup", { method: "POST", body: g }), 400);
  });

  test("a form over the form limit is 413 before it is buffered", async () => {
    const response = await rawRequest(`${w.url}/api/upload-backup`, {
      method: "POST",
      headers: { ...tokenHeaders("server"), "Content-Type": "multipart/form-data; boundary=x", "Content-Length": String(MAX_FORM_UPLOAD_BYTES + 1) },
    });
    expect(response.status).toBe(413);
  });
});

describe("listing", () => {
  const prefix = "backups/incremental/";
  const count = 1050;
  beforeAll(async () => {
    // Written straight into R2 (not the subject here), 50 at a time.
    const keys = Array.from(
      { length: count },
      (_, i) => `${prefix}${String(20250101 + Math.floor(i / 2)).padStart(8, "0")}T000000Z/${i % 2 ? "metadata.json" : "changes.ndjson.zst"}`,
    );
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => w.bucket.put(k, "x")));
  });

  test("more than 1,000 objects come back through the cursor, each once, in order", async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const query = new URLSearchParams({ prefix, ...(cursor ? { cursor } : {}) });
      const response = await api(`/api/backups?${query}`);
      expect(response.status).toBe(200);
      const page = (await response.json()) as ApiListing;
      seen.push(...page.objects.map((o) => o.key));
      expect(page.truncated).toBe(page.cursor !== undefined);
      cursor = page.cursor;
      pages++;
    } while (cursor);
    expect(pages).toBeGreaterThan(1);
    expect(seen).toHaveLength(count);
    expect(new Set(seen).size).toBe(count);
    expect([...seen].sort()).toEqual(seen);
  });

  test("limit and delimiter give pages and common prefixes", async () => {
    const limited = (await (await api(`/api/backups?prefix=${prefix}&limit=10`)).json()) as ApiListing;
    expect(limited.objects).toHaveLength(10);
    expect(limited.truncated).toBe(true);
    const grouped = (await (await api(`/api/backups?prefix=${prefix}&delimiter=/`)).json()) as ApiListing;
    expect(grouped.objects).toEqual([]);
    expect(grouped.prefixes.length).toBeGreaterThan(0);
    expect(grouped.prefixes[0]).toMatch(/^backups\/incremental\/\d{8}T000000Z\/$/);
  });

  test("an object's listing entry has the ApiObject shape", async () => {
    const page = (await (await api(`/api/backups?prefix=${prefix}&limit=1`)).json()) as ApiListing;
    expect(Object.keys(page.objects[0]!).sort()).toEqual(["etag", "key", "size", "uploaded"]);
  });

  test("a prefix outside backups/ or a bad limit is 400", async () => {
    await expectError(await api("/api/backups?prefix=secrets/"), 400);
    await expectError(await api("/api/backups?limit=5000"), 400);
  });
});

describe("multipart", () => {
  const MiB = 1024 * 1024;
  const part = (n: number, size: number) => Buffer.alloc(size, n);
  const key = `${FULL}/multi.db.zst`;

  async function create(k: string): Promise<string> {
    const response = await api(`${objectPath(k)}?uploads`, { method: "POST" });
    expect(response.status).toBe(201);
    const body = (await response.json()) as { key: string; uploadId: string };
    expect(body.key).toBe(k);
    return body.uploadId;
  }
  const partPath = (k: string, uploadId: string, n: number) => `${objectPath(k)}?uploadId=${encodeURIComponent(uploadId)}&partNumber=${n}`;

  test("create, two parts, complete: the object is the concatenation", async () => {
    const uploadId = await create(key);
    const sizes = [5 * MiB, 1000];
    const parts = [];
    for (const [i, size] of sizes.entries()) {
      const response = await api(partPath(key, uploadId, i + 1), { method: "PUT", body: part(i + 1, size) });
      expect(response.status).toBe(200);
      const answer = (await response.json()) as { partNumber: number; etag: string };
      expect(answer.partNumber).toBe(i + 1);
      parts.push(answer);
    }
    const done = await api(`${objectPath(key)}?uploadId=${encodeURIComponent(uploadId)}`, { method: "POST", body: JSON.stringify({ parts }) });
    expect(done.status).toBe(201);
    expect(await done.json()).toMatchObject({ key, size: 5 * MiB + 1000 });
    const body = Buffer.from(await (await api(objectPath(key))).arrayBuffer());
    expect(body.equals(Buffer.concat([part(1, 5 * MiB), part(2, 1000)]))).toBe(true);
  });

  test("starting an upload onto an existing key is 409", async () => {
    await expectError(await api(`${objectPath(key)}?uploads`, { method: "POST" }), 409);
  });

  test("completing onto a key that appeared meanwhile is 409 and keeps the first object", async () => {
    const k = `${FULL}/race.db.zst`;
    const uploadId = await create(k);
    const p = (await (await api(partPath(k, uploadId, 1), { method: "PUT", body: "late" })).json()) as { partNumber: number; etag: string };
    expect((await api(objectPath(k), { method: "PUT", body: "first" })).status).toBe(201);
    await expectError(await api(`${objectPath(k)}?uploadId=${encodeURIComponent(uploadId)}`, { method: "POST", body: JSON.stringify({ parts: [p] }) }), 409);
    expect(await (await w.bucket.get(k))!.text()).toBe("first");
  });

  test("an unknown uploadId is 404", async () => {
    await expectError(await api(partPath(`${FULL}/ghost.db.zst`, "no-such-upload", 1), { method: "PUT", body: "x" }), 404, "upload_not_found");
  });

  test("abort with the job's token, then the upload is gone (404) and nothing is stored", async () => {
    const k = `${FULL}/aborted.db.zst`;
    const uploadId = await create(k);
    expect((await api(partPath(k, uploadId, 1), { method: "PUT", body: "x" })).status).toBe(200);
    expect((await api(`${objectPath(k)}?uploadId=${encodeURIComponent(uploadId)}`, { method: "DELETE" })).status).toBe(204);
    await expectError(await api(partPath(k, uploadId, 2), { method: "PUT", body: "x" }), 404);
    await expectError(
      await api(`${objectPath(k)}?uploadId=${encodeURIComponent(uploadId)}`, { method: "POST", body: JSON.stringify({ parts: [{ partNumber: 1, etag: "x" }] }) }),
      404,
    );
    expect(await w.bucket.head(k)).toBeNull();
  });

  test("bad part numbers, part lists and unequal parts are 400", async () => {
    const k = `${FULL}/badparts.db.zst`;
    const uploadId = await create(k);
    await expectError(await api(partPath(k, uploadId, 0), { method: "PUT", body: "x" }), 400);
    await expectError(await api(partPath(k, uploadId, 10001), { method: "PUT", body: "x" }), 400);
    const complete = (body: string) => api(`${objectPath(k)}?uploadId=${encodeURIComponent(uploadId)}`, { method: "POST", body });
    await expectError(await complete("not json"), 400);
    await expectError(await complete(JSON.stringify({ parts: [] })), 400);
    await expectError(await complete(JSON.stringify({ parts: [{ partNumber: 1 }] })), 400);
    const small = (await (await api(partPath(k, uploadId, 1), { method: "PUT", body: "tiny" })).json()) as { partNumber: number; etag: string };
    const tail = (await (await api(partPath(k, uploadId, 2), { method: "PUT", body: "tail" })).json()) as { partNumber: number; etag: string };
    await expectError(await complete(JSON.stringify({ parts: [small, tail] })), 400);
    await expectError(await complete(JSON.stringify({ parts: [{ partNumber: 1, etag: "wrong" }] })), 400);
    expect(await w.bucket.head(k)).toBeNull();
  });

  test("a part without Content-Length is 411, one over the part limit 413", async () => {
    const k = `${FULL}/bigpart.db.zst`;
    const uploadId = await create(k);
    const chunked = await rawRequest(`${w.url}${partPath(k, uploadId, 1)}`, { method: "PUT", headers: tokenHeaders("server"), chunked: true });
    expect(chunked.status).toBe(411);
    const big = await rawRequest(`${w.url}${partPath(k, uploadId, 1)}`, { method: "PUT", headers: { ...tokenHeaders("server"), "Content-Length": String(96 * MiB) } });
    expect(big.status).toBe(413);
  });
});

test("no error body carries a token or a stack trace", () => {
  expect(errorBodies.length).toBeGreaterThan(20);
  for (const body of errorBodies) {
    expect(body).not.toContain(w.serverToken);
    expect(body).not.toContain(w.adminToken);
    expect(body).not.toMatch(/\n\s+at /);
    expect(Object.keys(JSON.parse(body)).sort()).toEqual(["error", "message"]);
  }
});
