import { HEADERS } from "../../core/api.ts";
import type { Env } from "./env.ts";
import { HttpError } from "./errors.ts";

/** Who is calling: the operator (may delete) or the backup job (may read and write). */
export type Role = "admin" | "server";

const encoder = new TextEncoder();

async function digest(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(text));
}

/**
 * Compares two strings in constant time: both are hashed first, so the comparison always runs over 32
 * bytes whatever the lengths, and `timingSafeEqual` does not stop at the first differing byte.
 */
export async function safeEqual(a: string, b: string): Promise<boolean> {
  const [da, db] = await Promise.all([digest(a), digest(b)]);
  return crypto.subtle.timingSafeEqual(da, db);
}

/** The token a request presents: `X-Server-Token` (the seed's header) or `Authorization: Bearer`. */
export function presentedToken(request: Request): string | undefined {
  const header = request.headers.get(HEADERS.serverToken);
  if (header) return header.trim();
  const authorization = request.headers.get(HEADERS.authorization);
  const match = authorization ? /^Bearer\s+(.+)$/i.exec(authorization.trim()) : null;
  return match?.[1]?.trim();
}

type TokenSecret = "SERVER_BYPASS_TOKEN" | "ADMIN_TOKEN";

/** Both token secrets, or a 500 naming every one that is not bound (never its value, never fail open). */
function requireSecrets(env: Env): Record<TokenSecret, string> {
  const names: TokenSecret[] = ["ADMIN_TOKEN", "SERVER_BYPASS_TOKEN"];
  const missing = names.filter((name) => typeof env[name] !== "string" || env[name].length === 0);
  if (missing.length > 0) {
    const list = missing.map((name) => `'${name}'`).join(" and ");
    throw new HttpError(
      500,
      "misconfigured",
      `authenticate request: the secret${missing.length > 1 ? "s" : ""} ${list} ${missing.length > 1 ? "are" : "is"} not bound to the Worker (set ${missing.length > 1 ? "them" : "it"} with \`pulumi config set --secret ...\` and \`pulumi up\`, or \`wrangler secret put ${missing[0]}\`)`,
    );
  }
  return { ADMIN_TOKEN: env.ADMIN_TOKEN!, SERVER_BYPASS_TOKEN: env.SERVER_BYPASS_TOKEN! };
}

/**
 * Authenticates a request: 500 when a token secret is not bound (never fail open), 401 when the token is
 * missing or matches neither secret. Both secrets are always compared, so timing does not tell which
 * one a token is close to.
 */
export async function authenticate(request: Request, env: Env): Promise<Role> {
  const { ADMIN_TOKEN: admin, SERVER_BYPASS_TOKEN: server } = requireSecrets(env);
  const token = presentedToken(request);
  const challenge = { "WWW-Authenticate": 'Bearer realm="backups"' };
  if (!token) {
    throw new HttpError(401, "unauthorized", `authenticate request: no token (send '${HEADERS.serverToken}: <token>' or 'Authorization: Bearer <token>')`, challenge);
  }
  // The previous job token (bound only during a rotation) is compared every time too, against an empty
  // string when unbound, so timing does not tell whether a rotation is under way. An empty token never matches.
  const previous = env.SERVER_BYPASS_TOKEN_PREVIOUS ?? "";
  const [isAdmin, isServer, isPrevious] = await Promise.all([safeEqual(token, admin), safeEqual(token, server), safeEqual(token, previous)]);
  if (isAdmin) return "admin";
  if (isServer || (isPrevious && previous.length > 0)) return "server";
  throw new HttpError(401, "unauthorized", "authenticate request: the token is not valid", challenge);
}

/** Refuses an operation reserved to `ADMIN_TOKEN` (deletes: the job's token can never destroy a backup). */
export function requireAdmin(role: Role, operation: string): void {
  if (role !== "admin") {
    throw new HttpError(403, "forbidden", `${operation}: only ADMIN_TOKEN may do this; the job's token can read and write, never delete`);
  }
}
