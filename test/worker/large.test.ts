import { createCipheriv, createHash } from "node:crypto";
import { expect, test } from "vitest";
import { DEFAULT_PART_BYTES, MAX_PARTS_IN_FLIGHT, objectPath, type ApiObject, type ApiPart } from "../../core/index.ts";
import { useWorker, type TestWorker } from "./harness.ts";

/**
 * A 300 MB object through the Worker by multipart (parts of 16 MiB, at most 2 in flight as R2 requires),
 * then downloaded back: the same sha256. The data is generated part by part (an AES-CTR keystream:
 * deterministic, incompressible), so the test never holds more than the parts in flight.
 */
const TOTAL = 300_000_000;
const PART = DEFAULT_PART_BYTES;
const KEY = "backups/full/20260201T000000Z/large.db.zst";

function partData(partNumber: number, size: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(partNumber, 0);
  const cipher = createCipheriv("aes-256-ctr", Buffer.alloc(32, 7), iv);
  return cipher.update(Buffer.alloc(size));
}

let w: TestWorker;
useWorker((started) => (w = started));

const headers = () => ({ "X-Server-Token": w.serverToken });

test("a 300 MB object goes up by multipart and comes back with the same sha256", async () => {
  const created = await fetch(`${w.url}${objectPath(KEY)}?uploads`, { method: "POST", headers: headers() });
  expect(created.status).toBe(201);
  const { uploadId } = (await created.json()) as { uploadId: string };
  const base = `${w.url}${objectPath(KEY)}?uploadId=${encodeURIComponent(uploadId)}`;

  const sent = createHash("sha256");
  const parts: ApiPart[] = [];
  const inFlight = new Set<Promise<void>>();
  let maxInFlight = 0;
  for (let offset = 0, n = 1; offset < TOTAL; offset += PART, n++) {
    const data = partData(n, Math.min(PART, TOTAL - offset));
    sent.update(data);
    const partNumber = n;
    const upload: Promise<void> = (async () => {
      const response = await fetch(`${base}&partNumber=${partNumber}`, { method: "PUT", headers: headers(), body: data });
      expect(response.status).toBe(200);
      parts.push((await response.json()) as ApiPart);
    })().finally(() => inFlight.delete(upload));
    inFlight.add(upload);
    maxInFlight = Math.max(maxInFlight, inFlight.size);
    if (inFlight.size >= MAX_PARTS_IN_FLIGHT) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  expect(maxInFlight).toBeLessThanOrEqual(MAX_PARTS_IN_FLIGHT);
  expect(parts).toHaveLength(Math.ceil(TOTAL / PART));

  const done = await fetch(base, { method: "POST", headers: { ...headers(), "Content-Type": "application/json" }, body: JSON.stringify({ parts }) });
  expect(done.status).toBe(201);
  expect(((await done.json()) as ApiObject).size).toBe(TOTAL);

  const download = await fetch(`${w.url}${objectPath(KEY)}`, { headers: headers() });
  expect(download.status).toBe(200);
  expect(download.headers.get("content-length")).toBe(String(TOTAL));
  const received = createHash("sha256");
  let bytes = 0;
  for await (const chunk of download.body as AsyncIterable<Uint8Array>) {
    received.update(chunk);
    bytes += chunk.length;
  }
  expect(bytes).toBe(TOTAL);
  expect(received.digest("hex")).toBe(sent.digest("hex"));
});

test("a Range across a part boundary of the large object returns exactly those bytes", async () => {
  const start = PART - 100;
  const end = PART + 99;
  const response = await fetch(`${w.url}${objectPath(KEY)}`, { headers: { ...headers(), Range: `bytes=${start}-${end}` } });
  expect(response.status).toBe(206);
  expect(response.headers.get("content-range")).toBe(`bytes ${start}-${end}/${TOTAL}`);
  const expected = Buffer.concat([partData(1, PART).subarray(PART - 100), partData(2, 100)]);
  expect(Buffer.from(await response.arrayBuffer()).equals(expected)).toBe(true);
});

test("a Range spanning several read windows of the large object returns exactly those bytes", async () => {
  const start = 1000;
  const length = 2 * PART + 12345;
  const response = await fetch(`${w.url}${objectPath(KEY)}`, { headers: { ...headers(), Range: `bytes=${start}-${start + length - 1}` } });
  expect(response.status).toBe(206);
  expect(response.headers.get("content-length")).toBe(String(length));
  const expected = Buffer.concat([partData(1, PART), partData(2, PART), partData(3, PART)]).subarray(start, start + length);
  expect(Buffer.from(await response.arrayBuffer()).equals(expected)).toBe(true);
});
