import { HEADERS } from "../../core/api.ts";
import { HttpError } from "./errors.ts";

/**
 * The declared body length of a request. Required because R2 streams only bodies of known length and
 * because the request cap (413) must be enforced before a byte is read (docs/design.md fact 2).
 */
export function requireContentLength(request: Request, max: number, operation: string, hint: string): number {
  const header = request.headers.get("Content-Length");
  if (header === null) {
    throw new HttpError(411, "length_required", `${operation}: a Content-Length header is required (the body is streamed to R2, which needs its length; chunked bodies are refused)`);
  }
  if (!/^\d{1,16}$/.test(header.trim())) {
    throw new HttpError(400, "bad_request", `${operation}: Content-Length '${header}' is not a whole number of bytes`);
  }
  const length = Number(header.trim());
  if (length > max) {
    throw new HttpError(413, "payload_too_large", `${operation}: the body is ${length} bytes, over the ${max}-byte limit (${hint})`);
  }
  return length;
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
