import { Miniflare, type R2S3Credentials } from "miniflare";
import { resolve } from "node:path";
import { BINDINGS } from "../core/index.ts";
import { COMPATIBILITY_DATE, COMPATIBILITY_FLAGS, bundleWorker } from "./bundle.ts";

/** The `failover` modes (infra/config.ts FAILOVER_MODES; infra is not imported here, it loads Pulumi). */
export type FailoverMode = "off" | "replica" | "replica-only";

/**
 * The local buckets' own names (what they are called on disk under the persist folder): the primary and
 * the replica, whichever binding serves them.
 */
export const LOCAL_BUCKETS = { primary: BINDINGS.bucket, replica: BINDINGS.replicaBucket } as const;

/** Binding name to local bucket, per failover mode (the same swap as infra's `servedBuckets`). */
export function localR2Buckets(replica: boolean, failover: FailoverMode = "off"): Record<string, string> {
  if (failover === "replica") return { [BINDINGS.bucket]: LOCAL_BUCKETS.replica, [BINDINGS.replicaBucket]: LOCAL_BUCKETS.primary };
  if (failover === "replica-only") return { [BINDINGS.bucket]: LOCAL_BUCKETS.replica };
  return replica ? { [BINDINGS.bucket]: LOCAL_BUCKETS.primary, [BINDINGS.replicaBucket]: LOCAL_BUCKETS.replica } : { [BINDINGS.bucket]: LOCAL_BUCKETS.primary };
}

/**
 * The Worker on this machine: the esbuild bundle of `worker/` (the same bytes that are deployed) in
 * Miniflare, with a real local R2. Used by `npm run dev`, `npm start`, and the worker and job tests.
 */

/** The tokens of a local Worker unless overridden; never used outside this machine. */
export const DEV_TOKENS = {
  [BINDINGS.serverToken]: "dev-server-token",
  [BINDINGS.adminToken]: "dev-admin-token",
} as const;

export interface LocalWorkerOptions {
  /** Folder for the local R2 (kept across runs). Without it, R2 lives in memory and vanishes on stop(). */
  persistDir?: string;
  /** Port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** Secrets and variables, merged over DEV_TOKENS; `undefined` unbinds one (e.g. to test a missing secret). */
  bindings?: Record<string, string | undefined>;
  /** Also bind `BACKUP_REPLICA_BUCKET` (a second local bucket). */
  replica?: boolean;
  /**
   * Which local bucket serves, as the stack config `failover` does in the cloud (infra's `servedBuckets`):
   * "off" (the default), "replica" (the replica serves, the primary is filled from it) or "replica-only"
   * (the primary is not bound). Anything but "off" implies `replica`.
   */
  failover?: FailoverMode;
  /** Lets `GET /cdn-cgi/handler/scheduled` run the cron handler (handy in `npm run dev`). */
  triggerHandlers?: boolean;
  /**
   * Also serves the local buckets over Miniflare's S3-compatible endpoint (`s3Url`), signed (SigV4) with
   * these keys; off by default. Path-style only: `<s3Url>/<bucket>/<key>`, the buckets named as in LOCAL_BUCKETS.
   */
  s3Credentials?: R2S3Credentials;
}

export interface LocalWorker {
  /** The Worker's origin, e.g. `http://127.0.0.1:54321` (no trailing slash). */
  url: string;
  /** The Miniflare instance (`mf.getR2Bucket("BACKUP_BUCKET")`, `mf.getWorker()`, ...). */
  mf: Miniflare;
  /** The secrets and variables the Worker runs with (tokens included). */
  bindings: Record<string, string>;
  /** With `s3Credentials`: the S3 endpoint of the same local R2, e.g. `http://127.0.0.1:54321/cdn-cgi/local/r2/s3`. */
  s3Url?: string;
  /** Runs the Worker's scheduled handler once, as the cron trigger would. */
  scheduled(): Promise<{ outcome: string }>;
  /** Stops workerd (and with it the listening socket). Safe to call twice. */
  stop(): Promise<void>;
}

/** The buckets as Miniflare takes them: by name, or with the keys of its S3 endpoint. */
function withS3(buckets: Record<string, string>, s3Credentials: R2S3Credentials | undefined): Record<string, string | { id: string; s3Credentials: R2S3Credentials }> {
  if (s3Credentials === undefined) return buckets;
  return Object.fromEntries(Object.entries(buckets).map(([binding, id]) => [binding, { id, s3Credentials }]));
}

/** Starts the bundled Worker in Miniflare on 127.0.0.1 and resolves once it answers. */
export async function startLocalWorker(options: LocalWorkerOptions = {}): Promise<LocalWorker> {
  const { code } = await bundleWorker();
  const bindings: Record<string, string> = {};
  for (const [name, value] of Object.entries({ ...DEV_TOKENS, ...options.bindings })) {
    if (value !== undefined) bindings[name] = value;
  }
  const mf = new Miniflare({
    modules: true,
    script: code,
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: COMPATIBILITY_FLAGS,
    host: "127.0.0.1",
    port: options.port ?? 0,
    r2Buckets: withS3(localR2Buckets(options.replica ?? false, options.failover), options.s3Credentials),
    r2Persist: options.persistDir === undefined ? false : resolve(options.persistDir, "r2"),
    bindings,
    unsafeTriggerHandlers: options.triggerHandlers ?? false,
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await mf.dispose();
  };
  try {
    const ready = await mf.ready;
    const url = ready.origin;
    return {
      url,
      mf,
      bindings,
      ...(options.s3Credentials ? { s3Url: `${url}/cdn-cgi/local/r2/s3` } : {}),
      async scheduled() {
        const worker = await mf.getWorker();
        const result = await worker.scheduled({ cron: "0 * * * *", scheduledTime: new Date() });
        return { outcome: result.outcome };
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
