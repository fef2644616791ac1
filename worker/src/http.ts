import { HEADERS } from "../../core/api.ts";
import { HttpError } from "./errors.ts";

/**
 * The declared body length of a request. Required because R2 streams only bodies of known length and
 * because the request cap (413) must be enforced before a byte is read (docs/design.md fact 2).
 */
export function requireContentLength(request: Request, max: number, operation: string, hint: string): number {
  const header = request.headers.get("Content-Length");
  if (header === null) {
    throw new HttpError(
      411,
      "length_required",
      `${operation}: a Content-Length header is required (the body is streamed to R2, which needs its length; chunked bodies are refused)`,
    );
  }
  if (!/^\d{1,16}$/.test(header.trim())) {
    throw new HttpError(400, "bad_request", `${operation}: Content-Length '${header}' is not a whole number of bytes`);
  }
  if (request.headers.has("Transfer-Encoding")) {
    // RFC 9112 6.3: both framings at once is how requests are smuggled; refuse rather than pick one.
    throw new HttpError(400, "bad_request", `${operation}: the request has both Content-Length and Transfer-Encoding; send one`);
  }
  const length = Number(header.trim());
  if (length > max) {
    throw new HttpError(413, "payload_too_large", `${operation}: the body is ${length} bytes, over the ${max}-byte limit (${hint})`);
  }
  return length;
}

/**
 * A request body of declared length, as a stream R2 accepts (a FixedLengthStream's readable half), counted
 * as it passes: never more than `length` bytes go through, whatever the framing (a chunked body that also
 * declares a length is cut at its first excess chunk). `failure(error)` turns a failed R2 call into the
 * client's fault when the body was the cause: too long, too short, or the client hung up (400, not 500).
 */
export interface CountedBody {
  body: ReadableStream<Uint8Array>;
  /** The HttpError for a failure the body caused, else undefined (a Worker or R2 failure). */
  failure(error: unknown): HttpError | undefined;
  /** The SHA-256 of the bytes that went through (lowercase hex), once the body is consumed. */
  sha256(): Promise<string>;
}

export function countedBody(request: Request, length: number, operation: string, options: { sha256?: boolean } = {}): CountedBody {
  if (request.body === null) throw new HttpError(400, "bad_request", `${operation}: the request has no body`);
  return options.sha256 ? hashedBody(request.body, length, operation) : pipedBody(request.body, length, operation);
}

const tooLong = (operation: string, length: number) => new HttpError(400, "bad_request", `${operation}: the body is longer than its Content-Length of ${length} bytes`);

/**
 * Without a hash the body is piped natively into the FixedLengthStream: workerd hands a request body over in
 * 4 KiB chunks, and a JavaScript loop over them doubled the CPU workerd spends per uploaded byte (measured in
 * Miniflare: ~34 against ~17 ms per MiB). The FixedLengthStream enforces the length itself: an excess chunk or
 * an early end fails the pipe, and the failure says which.
 */
function pipedBody(body: ReadableStream<Uint8Array>, length: number, operation: string): CountedBody {
  const fixed = new FixedLengthStream(length);
  // What went wrong with the body, from the pipe's failure or R2's (a body that ends early fails only R2's read).
  const bodyFault = (error: unknown): HttpError | undefined => {
    const message = String((error as Error)?.message ?? error);
    if (/too many bytes/i.test(message)) return tooLong(operation, length);
    if (/did not see all expected bytes|disconnect|connection|aborted|closed/i.test(message)) {
      return new HttpError(400, "incomplete_body", `${operation}: the body ended before its ${length} bytes (the client stopped sending, or sent fewer)`);
    }
    return undefined;
  };
  let failure: HttpError | undefined;
  let pipeError: unknown;
  body.pipeTo(fixed.writable).catch((e: unknown) => {
    pipeError = e;
    failure = bodyFault(e);
  });
  return {
    body: fixed.readable,
    // A failed pipe is the body's fault whatever it said (R2 only saw its stream end early).
    failure: (error) =>
      failure ??
      (pipeError !== undefined ? (bodyFault(error) ?? new HttpError(400, "incomplete_body", `${operation}: the body could not be read to its ${length} bytes`)) : undefined) ??
      (error instanceof HttpError ? error : bodyFault(error)),
    sha256: () => Promise.reject(new Error("countedBody: sha256 was not asked for")),
  };
}

/** With a hash, each chunk goes to the digest and then to R2 (a `tee()` would let the digest run ahead and buffer the rest). */
function hashedBody(body: ReadableStream<Uint8Array>, length: number, operation: string): CountedBody {
  let seen = 0;
  let failure: HttpError | undefined;
  const digest = new crypto.DigestStream("SHA-256");
  const digestWriter = digest.getWriter();
  const reader = body.getReader();
  const fixed = new FixedLengthStream(length);
  const writer = fixed.writable.getWriter();
  const fail = async (error: HttpError) => {
    failure = error;
    await reader.cancel().catch(() => undefined);
    await writer.abort(error).catch(() => undefined);
  };
  (async () => {
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch {
        return fail(new HttpError(400, "incomplete_body", `${operation}: the client stopped sending after ${seen} of ${length} bytes`));
      }
      if (next.done) break;
      seen += next.value.byteLength;
      if (seen > length) return fail(tooLong(operation, length));
      await digestWriter.write(next.value);
      // Resolves once R2 has taken the chunk: memory stays at a chunk or two whatever the client's speed.
      await writer.write(next.value);
    }
    if (seen < length) return fail(new HttpError(400, "incomplete_body", `${operation}: the body ended after ${seen} of its ${length} bytes`));
    await digestWriter.close();
    await writer.close();
  })().catch(() => undefined);
  return {
    body: fixed.readable,
    failure: (error) => failure ?? (error instanceof HttpError ? error : undefined),
    async sha256() {
      return [...new Uint8Array(await digest.digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    },
  };
}

/**
 * Reads a small body whole (a part list, a form) without ever holding more than `max` bytes plus one
 * chunk: a body over the limit is a 413 however it is framed, and the rest of it is never read.
 */
export async function readLimited(request: Request, max: number, operation: string, hint: string): Promise<Uint8Array> {
  const declared = request.headers.get("Content-Length");
  if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared) > max) {
    throw new HttpError(413, "payload_too_large", `${operation}: the body is ${declared} bytes, over the ${max}-byte limit (${hint})`);
  }
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > max) {
        await reader.cancel().catch(() => undefined);
        throw new HttpError(413, "payload_too_large", `${operation}: the body is over the ${max}-byte limit (${hint})`);
      }
      chunks.push(value);
    }
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw new HttpError(400, "incomplete_body", `${operation}: the client stopped sending after ${total} bytes`);
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return bytes;
}

const SHA256_RE = /^[0-9a-fA-F]{64}$/;

/** The optional `X-Content-SHA256` header, lowercased; 400 when present but not 64 hex digits. */
export function contentSha256(request: Request, operation: string): string | undefined {
  const header = request.headers.get(HEADERS.contentSha256);
  if (header === null) return undefined;
  const value = header.trim();
  if (!SHA256_RE.test(value)) {
    throw new HttpError(400, "bad_request", `${operation}: ${HEADERS.contentSha256} '${value.slice(0, 80)}' is not 64 hexadecimal digits`);
  }
  return value.toLowerCase();
}

/** A byte range resolved against an object's size: `offset` and `length` (both within the object). */
export interface ByteRange {
  offset: number;
  length: number;
}

/**
 * Resolves a `Range` header (RFC 9110) against an object's size. Returns undefined when the header is to
 * be ignored (absent, not `bytes`, malformed or several ranges: the whole object is then served with
 * 200, as the RFC allows), and throws 416 when the range cannot be satisfied.
 */
export function resolveRange(header: string | null, size: number): ByteRange | undefined {
  if (header === null) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return undefined;
  const [, first = "", last = ""] = m;
  if (first === "" && last === "") return undefined;
  const unsatisfiable = (): never => {
    throw new HttpError(416, "range_not_satisfiable", `read range '${header.trim()}': the object is ${size} bytes`, {
      "Content-Range": `bytes */${size}`,
    });
  };
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return unsatisfiable();
    const length = Math.min(suffix, size);
    return { offset: size - length, length };
  }
  const start = Number(first);
  if (start >= size) return unsatisfiable();
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (end < start) return undefined; // syntactically invalid (last < first): ignored per RFC 9110
  return { offset: start, length: end - start + 1 };
}
