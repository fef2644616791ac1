import { createHash } from "node:crypto";
import { connect } from "node:net";
import { describe, expect, test } from "vitest";
import { objectPath, type ApiPart } from "../../core/index.ts";
import { allKeys, useWorker, type TestWorker } from "./harness.ts";

/**
 * Bodies are read through a byte-counting limit whatever their headers say, and a client's mistake is a
 * 4xx (issue 14): a chunked body over the limit is refused having read little more than the limit, both
 * framings at once are refused, a short or abandoned body is the client's 400, an unknown or foreign
 * uploadId is 404, an empty part or one that does not match its X-Content-SHA256 is 400.
 */

let w: TestWorker;
useWorker((started) => (w = started));

const FULL = "backups/full/20260301T000000Z";
const MiB = 1024 * 1024;

interface Exchange {
  status: number;
  body: string;
  /** Body bytes the client had written when the answer's first byte arrived. */
  sentBeforeAnswer: number;
}

/**
 * One request over a raw socket: the head as given (any framing), then body chunks paced by the socket's
 * drain, stopping as soon as an answer arrives. `halfClose` ends the sending side after the chunks, as a
 * client that gives up mid-body while still listening.
 */
function exchange(head: string, chunks: Iterable<Buffer>, options: { halfClose?: boolean; paceMs?: number } = {}): Promise<Exchange> {
  const url = new URL(w.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    let sent = 0;
    let sentBeforeAnswer = -1;
    let text = "";
    const finish = () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      if (!status) return reject(new Error(`no answer (sent ${sent} bytes): ${text.slice(0, 200)}`));
      resolve({ status, body: text.slice(text.indexOf("\r\n\r\n") + 4), sentBeforeAnswer });
    };
    socket.on("data", (d) => {
      if (sentBeforeAnswer < 0) sentBeforeAnswer = sent;
      text += d.toString("latin1");
      // One answer is all we wait for: a JSON body of known length.
      const m = /content-length: (\d+)/i.exec(text);
      const start = text.indexOf("\r\n\r\n");
      if (m && start >= 0 && text.length - start - 4 >= Number(m[1])) {
        socket.destroy();
        finish();
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", finish);
    socket.write(head);
    (async () => {
      for (const chunk of chunks) {
        if (sentBeforeAnswer >= 0 || socket.destroyed) return;
        sent += chunk.byteLength;
        if (!socket.write(chunk)) await new Promise((r) => socket.once("drain", r));
        // Paced, an early answer arrives before the socket is reset for the unread rest.
        if (options.paceMs) await new Promise((r) => setTimeout(r, options.paceMs));
      }
      if (options.halfClose) socket.end();
    })().catch(() => undefined);
  });
}

/**
 * An exchange whose answer comes before the body is all sent. The Worker then closes a connection with
 * unread bytes, and the kernel's reset can discard the answer before the client reads it (workerd does no
 * lingering close): such an attempt, and only such, is repeated.
 */
async function earlyAnswer(run: () => Promise<Exchange>): Promise<Exchange> {
  let last: unknown;
  for (let attempt = 0; attempt < 8; attempt++) {
    try {
      return await run();
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

function* chunked(total: number, size: number, prefix?: Buffer, suffix?: Buffer): Generator<Buffer> {
  const frame = (b: Buffer) => Buffer.concat([Buffer.from(`${b.byteLength.toString(16)}\r\n`), b, Buffer.from("\r\n")]);
  if (prefix) yield frame(prefix);
  const block = Buffer.alloc(size, 0x61);
  for (let sent = 0; sent < total; sent += size) yield frame(block.subarray(0, Math.min(size, total - sent)));
  if (suffix) yield frame(suffix);
  yield Buffer.from("0\r\n\r\n");
}

const head = (method: string, path: string, headers: Record<string, string>) =>
  `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Server-Token: ${w.serverToken}\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;

const api = (path: string, init: RequestInit = {}) =>
  fetch(`${w.url}${path}`, { ...init, headers: { "X-Server-Token": w.serverToken, ...(init.headers as Record<string, string>) } });

async function startUpload(key: string): Promise<string> {
  const res = await api(`${objectPath(key)}?uploads`, { method: "POST" });
  expect(res.status).toBe(201);
  return ((await res.json()) as { uploadId: string }).uploadId;
}

describe("bounded reads", () => {
  test("a chunked 90 MiB part list is refused 413 having read about the 2 MiB limit, not the whole body", async () => {
    const key = `${FULL}/list.db.zst`;
    const uploadId = await startUpload(key);
    const r = await earlyAnswer(() =>
      exchange(
        head("POST", `${objectPath(key)}?uploadId=${encodeURIComponent(uploadId)}`, { "Transfer-Encoding": "chunked", "Content-Type": "application/json" }),
        chunked(90 * MiB, 64 * 1024),
        { paceMs: 1 },
      ),
    );
    expect(r.status, r.body).toBe(413);
    expect(JSON.parse(r.body)).toMatchObject({ error: "payload_too_large" });
    // The limit, plus what the sockets between the two hold; far from the 90 MiB the body was.
    expect(r.sentBeforeAnswer).toBeLessThan(16 * MiB);
  });

  test("a form that declares 100 bytes but streams 12 MiB chunked is refused and stores nothing", async () => {
    const key = `${FULL}/form.db`;
    const part = Buffer.from(`--zz\r\nContent-Disposition: form-data; name="file"; filename="${key}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
    const r = await earlyAnswer(() =>
      exchange(
        head("POST", "/api/upload-backup", { "Content-Type": "multipart/form-data; boundary=zz", "Content-Length": "100", "Transfer-Encoding": "chunked" }),
        chunked(12 * MiB, 64 * 1024, part, Buffer.from("\r\n--zz--\r\n")),
        { paceMs: 2 },
      ),
    );
    expect(r.status, r.body).toBe(400);
    expect(await allKeys(w.bucket, FULL)).toEqual([]);
  });

  test("Content-Length with Transfer-Encoding on a PUT or a part is 400, not 500, and stores nothing", async () => {
    const key = `${FULL}/both.db.zst`;
    const put = await earlyAnswer(() => exchange(head("PUT", objectPath(key), { "Content-Length": "100", "Transfer-Encoding": "chunked" }), chunked(300, 300), { paceMs: 20 }));
    expect(put.status, put.body).toBe(400);
    const uploadId = await startUpload(`${FULL}/both-parts.db.zst`);
    const part = await earlyAnswer(() =>
      exchange(
        head("PUT", `${objectPath(`${FULL}/both-parts.db.zst`)}?uploadId=${encodeURIComponent(uploadId)}&partNumber=1`, {
          "Content-Length": "100",
          "Transfer-Encoding": "chunked",
        }),
        chunked(300, 300),
        { paceMs: 20 },
      ),
    );
    expect(part.status, part.body).toBe(400);
    expect(await w.bucket.head(key)).toBeNull();
  });

  test("a part whose client stops sending mid-body gets 400 incomplete_body, and the upload cannot complete with it", async () => {
    const key = `${FULL}/short-part.db.zst`;
    const uploadId = await startUpload(key);
    const part = await exchange(
      head("PUT", `${objectPath(key)}?uploadId=${encodeURIComponent(uploadId)}&partNumber=1`, { "Content-Length": String(6 * MiB) }),
      [Buffer.alloc(MiB, 2)],
      { halfClose: true },
    );
    expect(part.status, part.body).toBe(400);
    expect(JSON.parse(part.body)).toMatchObject({ error: "incomplete_body" });
    const complete = await api(`${objectPath(key)}?uploadId=${encodeURIComponent(uploadId)}`, { method: "POST", body: JSON.stringify({ parts: [{ partNumber: 1, etag: "x" }] }) });
    expect(complete.status).toBeGreaterThanOrEqual(400);
    expect(complete.status).toBeLessThan(500);
    expect(await w.bucket.head(key)).toBeNull();
  });

  test("a client that stops sending mid-body gets 400 incomplete_body, and nothing is stored", async () => {
    const key = `${FULL}/short.db.zst`;
    const r = await exchange(head("PUT", objectPath(key), { "Content-Length": "1000000" }), [Buffer.alloc(1000, 1)], { halfClose: true });
    expect(r.status, r.body).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ error: "incomplete_body" });
    expect(await w.bucket.head(key)).toBeNull();
  });
});

describe("client mistakes on multipart are 4xx", () => {
  test("a garbage or another key's uploadId on complete and abort is 404, never 500", async () => {
    const key = `${FULL}/ids.db.zst`;
    const other = await startUpload(`${FULL}/other.db.zst`);
    for (const id of ["garbage", other]) {
      const q = `?uploadId=${encodeURIComponent(id)}`;
      const complete = await api(`${objectPath(key)}${q}`, { method: "POST", body: JSON.stringify({ parts: [{ partNumber: 1, etag: "x" }] }) });
      expect(complete.status, await complete.clone().text()).toBe(404);
      expect(await complete.json()).toMatchObject({ error: "upload_not_found" });
      const abort = await api(`${objectPath(key)}${q}`, { method: "DELETE" });
      expect(abort.status).toBe(404);
    }
  });

  test("an empty part is 400", async () => {
    const key = `${FULL}/empty-part.db.zst`;
    const uploadId = await startUpload(key);
    const res = await api(`${objectPath(key)}?uploadId=${encodeURIComponent(uploadId)}&partNumber=1`, { method: "PUT", body: new Uint8Array(0) });
    expect(res.status).toBe(400);
  });

  test("a part's X-Content-SHA256 is checked: a mismatch is 400 and gives no etag, a match is accepted", async () => {
    const key = `${FULL}/hashed.db.zst`;
    const uploadId = await startUpload(key);
    const body = Buffer.alloc(6 * MiB, 3);
    const url = `${objectPath(key)}?uploadId=${encodeURIComponent(uploadId)}&partNumber=1`;
    const wrong = await api(url, { method: "PUT", body, headers: { "X-Content-SHA256": "0".repeat(64) } });
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toMatchObject({ error: "checksum_mismatch" });
    const right = await api(url, { method: "PUT", body, headers: { "X-Content-SHA256": createHash("sha256").update(body).digest("hex") } });
    expect(right.status).toBe(200);
    const part = (await right.json()) as ApiPart;
    const done = await api(`${objectPath(key)}?uploadId=${encodeURIComponent(uploadId)}`, { method: "POST", body: JSON.stringify({ parts: [part] }) });
    expect(done.status).toBe(201);
    expect((await w.bucket.head(key))?.size).toBe(body.byteLength);
  });
});
