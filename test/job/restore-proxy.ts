import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A fault-injecting HTTP proxy in front of the local Worker: for GETs of stored objects (`.zst`) it can
 * cut the connection after some bytes (once or every time), or stall mid-body. It records the `Range`
 * headers it saw, so tests prove a resume asked for the right offset.
 */
export type ProxyFault = { kind: "none" } | { kind: "cut"; afterBytes: number; times: number } | { kind: "stall"; afterBytes: number };

export interface FaultProxy {
  url: string;
  fault: ProxyFault;
  /** `Range` header of every object GET (undefined when none was sent). */
  ranges: (string | undefined)[];
  close(): Promise<void>;
}

export async function startFaultProxy(upstream: string, fault: ProxyFault = { kind: "none" }): Promise<FaultProxy> {
  const sockets = new Set<import("node:net").Socket>();
  const proxy: FaultProxy = { url: "", fault, ranges: [], close: async () => {} };
  const server: Server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && k !== "host" && k !== "connection") headers.set(k, v);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const up = await fetch(`${upstream}${req.url}`, { method: req.method!, headers, ...(chunks.length ? { body: Buffer.concat(chunks) } : {}) });
    const isObject = req.method === "GET" && /\.zst(\?|$)/.test(req.url ?? "");
    if (isObject) proxy.ranges.push(req.headers.range);
    const out: Record<string, string> = {};
    up.headers.forEach((v, k) => {
      if (k !== "content-encoding" && k !== "transfer-encoding" && k !== "connection") out[k] = v;
    });
    res.writeHead(up.status, out);
    if (!up.body) return void res.end();
    const f = proxy.fault;
    let sent = 0;
    for await (const chunk of up.body as unknown as AsyncIterable<Uint8Array>) {
      if (isObject && f.kind !== "none" && !(f.kind === "cut" && f.times <= 0) && sent + chunk.byteLength > f.afterBytes) {
        const kind = f.kind;
        if (kind === "cut") f.times--;
        // Destroy only once the partial body is flushed, so the client sees headers and some bytes.
        res.write(chunk.subarray(0, Math.max(0, f.afterBytes - sent)), () => {
          if (kind === "cut") setTimeout(() => res.destroy(), 20);
        });
        // A stall keeps the connection open and sends nothing more.
        return;
      }
      sent += chunk.byteLength;
      res.write(chunk);
    }
    res.end();
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return proxy;
}
