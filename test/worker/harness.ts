import { request as httpRequest } from "node:http";
import { afterAll, beforeAll } from "vitest";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import type { Miniflare } from "miniflare";
import { BINDINGS } from "../../core/index.ts";
import { DEV_TOKENS, startLocalWorker, type LocalWorker, type LocalWorkerOptions } from "../../worker/local.ts";

/**
 * Shared setup of the worker tests (and of the job tests that need a Worker): the bundled Worker in
 * Miniflare with a real local R2, reached over real HTTP on 127.0.0.1.
 */
/** The local R2 bucket as Miniflare hands it to Node. */
export type R2Bucket = Awaited<ReturnType<Miniflare["getR2Bucket"]>>;

export interface TestWorker extends LocalWorker {
  /** The primary bucket, read from Node (to check what a request did or did not write). */
  bucket: R2Bucket;
  /** The replica bucket when `replica: true`. */
  replicaBucket?: R2Bucket;
  /** The job's token and the admin token the Worker runs with. */
  serverToken: string;
  adminToken: string;
}

export const SERVER_TOKEN = DEV_TOKENS[BINDINGS.serverToken];
export const ADMIN_TOKEN = DEV_TOKENS[BINDINGS.adminToken];

/**
 * A Worker for the tests of a file (or of a describe block): started before them, handed to `set`, stopped after
 * them. The one setup the worker tests share. With `webhook`, a webhook receiver is started first and bound as the
 * Worker's ALERT_WEBHOOK_URL (handed to `set` too, closed after the tests).
 */
export function useWorker(set: (worker: TestWorker, hook: WebhookReceiver | undefined) => void, options: LocalWorkerOptions & { webhook?: boolean } = {}): void {
  let worker: TestWorker | undefined;
  let hook: WebhookReceiver | undefined;
  beforeAll(async () => {
    const { webhook, ...rest } = options;
    if (webhook) hook = await startWebhookReceiver();
    worker = await startWorker(hook ? { ...rest, bindings: { ...rest.bindings, ALERT_WEBHOOK_URL: hook.url } } : rest);
    set(worker, hook);
  });
  afterAll(async () => {
    await worker?.stop();
    await hook?.close();
  });
}

/** Starts a Worker with in-memory R2 (unless `persistDir`); call `stop()` in `afterAll`. */
export async function startWorker(options: LocalWorkerOptions = {}): Promise<TestWorker> {
  const worker = await startLocalWorker(options);
  const bucket = await worker.mf.getR2Bucket(BINDINGS.bucket);
  const replicaBucket =
    (options.replica && options.failover !== "replica-only") || options.failover === "replica" ? await worker.mf.getR2Bucket(BINDINGS.replicaBucket) : undefined;
  return {
    ...worker,
    bucket,
    ...(replicaBucket ? { replicaBucket } : {}),
    serverToken: worker.bindings[BINDINGS.serverToken] ?? SERVER_TOKEN,
    adminToken: worker.bindings[BINDINGS.adminToken] ?? ADMIN_TOKEN,
  };
}

/** Every key of a bucket under a prefix, following the cursor. */
export async function allKeys(bucket: R2Bucket, prefix = "backups/"): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix, ...(cursor ? { cursor } : {}) });
    keys.push(...page.objects.map((o) => o.key));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return keys;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * A request whose framing fetch would not send: a `Content-Length` larger than the bytes actually sent
 * (to earn a 413 before the body is read), or a chunked body with no length (411). Resolves with the
 * Worker's early answer; the socket is then dropped.
 */
export function rawRequest(url: string, options: { method: string; headers: Record<string, string>; chunked?: boolean }): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest(url, { method: options.method, headers: options.headers }, (res: IncomingMessage) => {
      answered = true;
      const chunks: Buffer[] = [];
      const done = () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") });
        req.destroy();
      };
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", done);
      // The Worker may reset the connection after answering, since the body it refused is still unsent.
      res.on("error", done);
    });
    req.on("error", (error) => {
      if (!answered) reject(error);
    });
    if (options.chunked) req.setHeader("Transfer-Encoding", "chunked");
    // Only the headers are sent; the body never comes, so the Worker must answer from the headers alone.
    req.flushHeaders();
  });
}

/** A webhook receiver on 127.0.0.1:0 that records each JSON body it is posted. */
export interface WebhookReceiver {
  url: string;
  received: unknown[];
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const received: unknown[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      try {
        received.push(JSON.parse(text));
      } catch {
        received.push(text);
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
