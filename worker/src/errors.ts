import type { ApiError } from "../../core/api.ts";
import { ContractError } from "../../core/errors.ts";

/**
 * The one error type of the Worker: a status, a short machine-readable `error` code and a message that
 * reads `<operation> <thing> '<id>': <reason>`. Anything else thrown becomes a 500 without details.
 */
export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Record<string, string>;

  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/** A JSON response with no caching (every answer of the API is per-request). */
export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store", ...headers },
  });
}

/**
 * The one error handler: an HttpError keeps its status and message, a core ContractError (a bad key or
 * input) is a 400, anything else is a 500 whose body says nothing about the cause (it is logged instead),
 * so no stack trace, binding detail or token ever reaches a client.
 */
export function errorResponse(error: unknown, request?: Request): Response {
  let status: number;
  let body: ApiError;
  let headers: Record<string, string> = {};
  if (error instanceof HttpError) {
    status = error.status;
    body = { error: error.code, message: error.message };
    headers = error.headers;
  } else if (error instanceof ContractError) {
    status = 400;
    body = { error: "bad_request", message: error.message };
  } else {
    status = 500;
    body = { error: "internal_error", message: "internal error: the Worker failed to handle the request (see the Worker's logs)" };
    console.error(`${request?.method ?? ""} ${request ? new URL(request.url).pathname : ""}: ${describeError(error)}`);
  }
  // A HEAD response carries no body; the status and headers still say what went wrong.
  if (request?.method === "HEAD") return new Response(null, { status, headers: { "Cache-Control": "no-store", ...headers } });
  return json(body, status, headers);
}

/** The message of an unknown thrown value, for logs only. */
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
