import * as pulumi from "@pulumi/pulumi";

/*
 * The account's workers.dev subdomain (`<sub>.workers.dev`), looked up from Cloudflare instead of typed
 * into config: @pulumi/cloudflare 6.22 has no data source for it (only per-script `WorkersScriptSubdomain`),
 * so this dynamic resource reads `GET /accounts/{id}/workers/subdomain` on create and on refresh.
 *
 * Serialization: no top-level import is captured; the token is read from CLOUDFLARE_API_TOKEN (the one
 * the Cloudflare provider uses) inside each call, so it never reaches the state. CLOUDFLARE_API_URL
 * (default https://api.cloudflare.com/client/v4) lets tests point it at a local stand-in.
 */

/** Reads the account's workers.dev subdomain. */
export async function lookUpWorkersSubdomain(accountId: string): Promise<string> {
  const token = process.env.CLOUDFLARE_API_TOKEN;
  const what = `look up workers.dev subdomain of account '${accountId}'`;
  if (!token) throw new Error(`${what}: CLOUDFLARE_API_TOKEN is not set (or set r2-sqlite-backup:workersDevSubdomain)`);
  const base = (process.env.CLOUDFLARE_API_URL || "https://api.cloudflare.com/client/v4").replace(/\/+$/, "");
  const res = await fetch(`${base}/accounts/${encodeURIComponent(accountId)}/workers/subdomain`, { headers: { authorization: `Bearer ${token}`, accept: "application/json" } });
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const subdomain = body?.result?.subdomain;
  if (res.ok && typeof subdomain === "string" && subdomain !== "") return subdomain;
  const reason =
    res.status === 404 || (res.ok && !subdomain)
      ? "the account has no workers.dev subdomain yet (open Workers & Pages in the Cloudflare dashboard once to choose one)"
      : `${res.status} ${body?.errors?.[0]?.message ?? text.slice(0, 200)}${res.status === 401 || res.status === 403 ? " (the token needs Workers Scripts Read on the account)" : ""}`;
  throw new Error(`${what}: ${reason}`);
}

export const workersSubdomainProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: any, news: any): Promise<pulumi.dynamic.DiffResult> {
    const replaces = olds?.accountId !== news?.accountId ? ["accountId"] : [];
    return { changes: replaces.length > 0, replaces };
  },
  async create(inputs: any): Promise<pulumi.dynamic.CreateResult> {
    const accountId = String(inputs?.accountId ?? "");
    return { id: accountId, outs: { accountId, subdomain: await lookUpWorkersSubdomain(accountId) } };
  },
  async read(id: string, props: any): Promise<pulumi.dynamic.ReadResult> {
    const accountId = String(props?.accountId ?? id);
    return { id, props: { accountId, subdomain: await lookUpWorkersSubdomain(accountId) } };
  },
  async delete(): Promise<void> {},
};

/** The account's workers.dev subdomain (`pulumi-nodejs:dynamic/cloudflare:WorkersSubdomain`). */
export class WorkersSubdomain extends pulumi.dynamic.Resource {
  declare readonly subdomain: pulumi.Output<string>;

  constructor(name: string, args: { accountId: pulumi.Input<string> }, opts: pulumi.CustomResourceOptions = {}) {
    super(workersSubdomainProvider, name, { ...args, subdomain: undefined }, opts, "cloudflare", "WorkersSubdomain");
  }
}
