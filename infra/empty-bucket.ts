import * as pulumi from "@pulumi/pulumi";

/*
 * R2 deletes only empty buckets, and the Cloudflare provider has no "force destroy": a preview stack that
 * received backups would fail `pulumi destroy` on its bucket and stay behind. This dynamic resource,
 * created on preview stacks only, does nothing on create and empties the bucket on delete, through the
 * stack's own Worker with the admin token (the only token that may delete; previews have no bucket lock).
 * It depends on the Worker, its workers.dev subdomain and the bucket, so `destroy` deletes it first.
 *
 * Serialization: like the Render providers, it captures no top-level import and uses the global `fetch`.
 */

/** Inputs: where the Worker answers and the admin token (secret in the state). */
export interface EmptyBucketInputs {
  workerUrl: string;
  adminToken: string;
  bucketName: string;
}

/** Deletes every object under `backups/` through the Worker's API; resolves with how many were deleted. */
export async function emptyThroughWorker(workerUrl: string, adminToken: string): Promise<number> {
  const base = workerUrl.replace(/\/+$/, "");
  const headers = { authorization: `Bearer ${adminToken}`, accept: "application/json" };
  let deleted = 0;
  // Each round lists a page and deletes it; deleting changes what later pages hold, so start over each time.
  for (;;) {
    const res = await fetch(`${base}/api/backups?prefix=${encodeURIComponent("backups/")}&limit=1000`, { headers });
    const text = await res.text();
    if (!res.ok)
      throw new Error(
        `empty bucket through '${base}': listing answered ${res.status} ${text.slice(0, 200)} (delete the objects in the Cloudflare dashboard, then run pulumi destroy again)`,
      );
    const page = JSON.parse(text) as { objects?: { key: string }[] };
    const keys = (page.objects ?? []).map((o) => o.key);
    if (keys.length === 0) return deleted;
    for (const key of keys) {
      const path = key.split("/").map(encodeURIComponent).join("/");
      const del = await fetch(`${base}/api/backups/${path}`, { method: "DELETE", headers });
      const body = await del.text();
      if (!del.ok && del.status !== 404) throw new Error(`empty bucket through '${base}': DELETE '${key}' answered ${del.status} ${body.slice(0, 200)}`);
      deleted++;
    }
  }
}

export const emptyBucketProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: any, news: any): Promise<pulumi.dynamic.DiffResult> {
    const changed = ["workerUrl", "adminToken", "bucketName"].some((k) => olds?.[k] !== news?.[k]);
    return { changes: changed, replaces: [] };
  },
  async create(inputs: any): Promise<pulumi.dynamic.CreateResult> {
    return { id: `empty-on-destroy-${String(inputs?.bucketName ?? "")}`, outs: { workerUrl: inputs?.workerUrl, adminToken: inputs?.adminToken, bucketName: inputs?.bucketName } };
  },
  async update(_id: string, _olds: any, news: any): Promise<pulumi.dynamic.UpdateResult> {
    return { outs: { workerUrl: news?.workerUrl, adminToken: news?.adminToken, bucketName: news?.bucketName } };
  },
  async delete(_id: string, props: any): Promise<void> {
    await emptyThroughWorker(String(props?.workerUrl ?? ""), String(props?.adminToken ?? ""));
  },
};

/** Empties a preview stack's bucket when the stack is destroyed (`pulumi-nodejs:dynamic/r2:EmptyBucketOnDestroy`). */
export class EmptyBucketOnDestroy extends pulumi.dynamic.Resource {
  constructor(
    name: string,
    args: { workerUrl: pulumi.Input<string>; adminToken: pulumi.Input<string>; bucketName: pulumi.Input<string> },
    opts: pulumi.CustomResourceOptions = {},
  ) {
    super(emptyBucketProvider, name, { ...args, adminToken: pulumi.secret(args.adminToken) }, { ...opts, additionalSecretOutputs: ["adminToken"] }, "r2", "EmptyBucketOnDestroy");
  }
}
