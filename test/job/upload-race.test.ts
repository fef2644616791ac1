import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { HttpStore } from "../../job/store/http-store.ts";
import { KeyTaken, StreamUpload } from "../../job/upload.ts";
import { useTestBucket } from "./bucket.ts";

/**
 * Two uploads to one key (two runs that planned the same set id), on R2 whose part etags are opaque: a
 * completion that meets the other's object cannot tell it apart by etag, and must not take it for its own.
 */
const t = useTestBucket("upload-race-");

const read = async (s: IncomingMessage) => Buffer.concat(await s.toArray());

/**
 * Between the job and the local Worker, answers part uploads with opaque etags (as R2 does; Miniflare's are
 * md5s, which the job can check exactly) and maps them back in completions.
 */
async function opaqueEtags(upstream: string): Promise<{ url: string; close(): Promise<void> }> {
  const target = new URL(upstream);
  const real = new Map<string, string>();
  const server: Server = createServer(async (req, res) => {
    let body = await read(req);
    const url = req.url ?? "";
    const completion = req.method === "POST" && url.includes("uploadId=");
    if (completion) {
      const parsed = JSON.parse(body.toString()) as { parts: { partNumber: number; etag: string }[] };
      body = Buffer.from(JSON.stringify({ parts: parsed.parts.map((p) => ({ ...p, etag: real.get(p.etag) ?? p.etag })) }));
    }
    const headers = { ...req.headers, "content-length": String(body.length) };
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: url, headers }, async (upRes) => {
      const answer = await read(upRes);
      if (req.method === "PUT" && url.includes("partNumber=") && upRes.statusCode === 200) {
        const part = JSON.parse(answer.toString()) as { partNumber: number; etag: string };
        const opaque = `opaque-${real.size + 1}`;
        real.set(opaque, part.etag);
        const rewritten = Buffer.from(JSON.stringify({ ...part, etag: opaque }));
        res.writeHead(200, { ...upRes.headers, "content-length": String(rewritten.length) });
        res.end(rewritten);
        return;
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      res.end(answer);
    });
    up.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

describe("two uploads to one key, with opaque part etags", () => {
  it("the second completion, meeting the first's object of the same part count, fails instead of taking it for its own", async () => {
    const proxy = await opaqueEtags(t.bucket.url);
    try {
      const store = new HttpStore({ url: proxy.url, token: t.bucket.token, attempts: 2, backoffMs: 5 });
      const key = "backups/full/20260105T000000Z/app.db.zst";
      const partBytes = 5 * 1024 * 1024;
      const a = new StreamUpload(store, key, { partBytes });
      const b = new StreamUpload(store, key, { partBytes });
      // Both start before either completes: two parts each, last parts of different sizes.
      await a.write(Buffer.alloc(partBytes, 1));
      await b.write(Buffer.alloc(partBytes, 2));
      await a.write(Buffer.alloc(100, 1));
      await b.write(Buffer.alloc(200, 2));
      const first = await a.finish("unused-for-multipart");
      expect(first.size).toBe(partBytes + 100);
      const err = await b.finish("unused-for-multipart").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyTaken);
      expect(err).toMatchObject({ kind: "integrity", message: expect.stringMatching(/the object stored under it has 5242980 bytes, this upload sent 5243080/) });
      expect((await store.head(key))?.size).toBe(partBytes + 100);
    } finally {
      await proxy.close();
    }
  });
});
