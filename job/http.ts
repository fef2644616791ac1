import type { ClientRequest, IncomingMessage as Incoming } from "node:http";
import { open } from "node:fs/promises";
import { Readable } from "node:stream";
import { JobError } from "./errors.ts";
import { displayUrl } from "./log.ts";
import { Agent as HttpAgent, IncomingMessage, request as httpRequest } from "./node-http.ts";
import type { Body, FileRange } from "./store/types.ts";
import { pageAlignedBuffers } from "./aligned.ts";

/**
 * The job's one HTTP client (the store, webhooks, the agent trigger, the replica-lag read): node:http(s), never
 * `fetch` (see Answer), kept-alive connections, a body sent as it is or read from a file range.
 */

const NULL_BODY_STATUS = new Set([101, 204, 205, 304]);
const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 4 });

/**
 * node:https and its agent, loaded for the first https:// request: TLS and its CA store are ~7 MiB of RSS a job
 * talking to a local Worker or agent over http:// never needs.
 */
let https: { request: typeof import("node:https").request; agent: import("node:https").Agent } | undefined;
function httpsClient(): NonNullable<typeof https> {
  if (!https) {
    const { Agent, request } = process.getBuiltinModule("node:https");
    https = { request, agent: new Agent({ keepAlive: true, maxSockets: 4 }) };
  }
  return https;
}

/**
 * One answer of the Worker, as the store reads it: status, headers, and the body as a web stream (or whole).
 * Not fetch's Response: `fetch` and `Response` load Node's bundled undici at first use (~13 MiB), and its HTTP
 * parser, WebAssembly, is compiled again in the background once a few requests made it hot, which kept
 * another ~15 MiB for good (heaptrack of a host's backup, issue 16). node:http parses in C.
 */
export class Answer {
  readonly status: number;
  readonly statusText: string;
  readonly headers: { get(name: string): string | null };
  readonly #raw: Record<string, string | string[] | undefined>;
  #source: Incoming | Uint8Array | ReadableStream<Uint8Array> | null;
  #body: ReadableStream<Uint8Array> | null | undefined;

  constructor(status: number, statusText: string, headers: Record<string, string | string[] | undefined>, source: Incoming | Uint8Array | ReadableStream<Uint8Array> | null) {
    this.status = status;
    this.statusText = statusText;
    this.#raw = headers;
    this.headers = {
      get: (name: string) => {
        const v = headers[name.toLowerCase()];
        return v === undefined ? null : Array.isArray(v) ? v.join(", ") : String(v);
      },
    };
    this.#source = NULL_BODY_STATUS.has(status) ? null : source;
    if (this.#source === null && source instanceof IncomingMessage) source.resume();
  }

  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  /** The body as a web stream (read once), or null for an answer without one. */
  get body(): ReadableStream<Uint8Array> | null {
    if (this.#body !== undefined) return this.#body;
    const source = this.#source;
    const body =
      source === null
        ? null
        : source instanceof IncomingMessage
          ? (Readable.toWeb(source) as ReadableStream<Uint8Array>)
          : source instanceof Uint8Array
            ? new ReadableStream<Uint8Array>({
                start(controller) {
                  if (source.byteLength > 0) controller.enqueue(source);
                  controller.close();
                },
              })
            : source;
    this.#body = body;
    return body;
  }

  /**
   * Lets the connection go back to the pool when the body is not wanted: node:http keeps a kept-alive
   * connection until its answer is read to the end (4 unread answers and every later request waits).
   */
  discard(): void {
    const source = this.#source;
    if (this.#body === undefined && source instanceof IncomingMessage) {
      source.resume();
      this.#body = null;
    }
  }

  /** The same answer with another body (a small one read whole, or a stream that starts with what was read). */
  withBody(body: Uint8Array | ReadableStream<Uint8Array>): Answer {
    return new Answer(this.status, this.statusText, this.#raw, body);
  }

  async text(): Promise<string> {
    if (this.#source instanceof Uint8Array && this.#body === undefined) return Buffer.from(this.#source).toString("utf8");
    const chunks: Uint8Array[] = [];
    const body = this.body;
    if (body) for await (const chunk of body) chunks.push(chunk);
    return Buffer.concat(chunks).toString("utf8");
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }
}

/** A request's options: fetch's, with a body of text, bytes (sent as they are) or a file range (read from disk). */
export type SendInit = Omit<RequestInit, "body"> & { body?: string | Body };

/**
 * One request through node:http(s) (see Answer): a byte body is sent as it is (no copy), a file range is read
 * afresh from disk on every attempt, and the answer's headers resolve it. A redirect is not followed: the
 * Worker never sends one, so it means R2_WORKER_URL points somewhere else (e.g. http:// behind "always HTTPS").
 */
export async function send(url: string | URL, init: SendInit = {}): Promise<Answer> {
  try {
    return await sendOnce(url, init);
  } catch (e) {
    // A kept-alive connection the Worker had already closed (it answers some requests before reading their
    // body, then hangs up): Node's advice is to send again on a new one. Any other failure is the caller's to retry.
    if ((e as { reusedSocket?: boolean }).reusedSocket && ["ECONNRESET", "EPIPE"].includes(String((e as { cause?: { code?: string } }).cause?.code))) return sendOnce(url, init);
    throw e;
  }
}

async function sendOnce(url: string | URL, init: SendInit): Promise<Answer> {
  const { body } = init;
  const file = body === undefined || typeof body === "string" || body instanceof Uint8Array ? undefined : body;
  const bytes = typeof body === "string" ? Buffer.from(body) : body instanceof Uint8Array ? body : undefined;
  if (file !== undefined && typeof (file as Partial<FileRange>).path !== "string") throw new Error("send: a body is a string, bytes or a file range");
  const target = new URL(url);
  const secure = target.protocol === "https:";
  const length = file ? file.length : bytes?.byteLength;
  const headers: Record<string, string> = { ...(init.headers as Record<string, string>), ...(length !== undefined ? { "content-length": String(length) } : {}) };
  return new Promise<Answer>((resolve, reject) => {
    const client = secure ? httpsClient() : { request: httpRequest, agent: httpAgent };
    const req = client.request(target, { method: init.method ?? "GET", headers, agent: client.agent, ...(init.signal ? { signal: init.signal } : {}) }, (res) => {
      const status = res.statusCode ?? 502;
      if (status >= 300 && status < 400) {
        res.resume();
        const location = res.headers.location;
        let to = "(no Location)";
        try {
          if (location) to = displayUrl(new URL(location, target)); // a relative Location resolves against the request
        } catch {
          to = "(an unreadable Location)";
        }
        return reject(
          new JobError("usage", `${init.method ?? "GET"} ${displayUrl(target)}: the Worker URL redirects (${status}) to ${to}`, {
            hint: "set R2_WORKER_URL (or --worker-url) to the address it redirects to, e.g. https:// instead of http://",
          }),
        );
      }
      resolve(new Answer(status, res.statusMessage ?? "", res.headers, res));
    });
    req.on("error", (e) => reject(Object.assign(new Error(e.message), { cause: e, reusedSocket: req.reusedSocket })));
    if (!file) return void req.end(bytes);
    sendFileRange(file, req).catch((e: Error) => {
      req.destroy(e);
      reject(Object.assign(new Error(`read '${file.path}': ${e.message}`), { cause: e }));
    });
  });
}

/**
 * Writes a file range as a request body, read afresh (every attempt) through one reused buffer: each write
 * is handed to the socket before the buffer is filled again, so nothing is allocated per chunk (a read
 * stream's fresh 256 KiB chunks piled up to ~60 MiB before a GC in a host process without small semi-spaces).
 */
async function sendFileRange(file: FileRange, req: ClientRequest): Promise<void> {
  const handle = await open(file.path, "r");
  try {
    const buffer = spareFileChunks.pop() ?? (pageAlignedBuffers(1, FILE_CHUNK_BYTES)[0] as Buffer);
    for (let at = 0; at < file.length; ) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, file.length - at), file.offset + at);
      if (bytesRead === 0) throw new Error(`the file ended at ${file.offset + at} bytes, before the ${file.length} bytes from ${file.offset}`);
      await new Promise<void>((resolve, reject) => req.write(buffer.subarray(0, bytesRead), (e) => (e ? reject(e) : resolve())));
      at += bytesRead;
    }
    req.end();
    if (spareFileChunks.length < MAX_SPARE_FILE_CHUNKS) spareFileChunks.push(buffer);
  } finally {
    await handle.close();
  }
}

const FILE_CHUNK_BYTES = 256 * 1024;

/**
 * Read buffers of `sendFileRange`, kept for the next request (at most MAX_SPARE_FILE_CHUNKS, 1 MiB): they start on
 * a page, where the kernel copies the spool into them ~3x faster (job/aligned.ts), and a WebAssembly memory per
 * request (~47 for a 1 GiB backup) stayed until a GC took them: the CLI's peak RSS rose by 4 MiB.
 */
const spareFileChunks: Buffer[] = [];
const MAX_SPARE_FILE_CHUNKS = 4;
