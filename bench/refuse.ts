import { connect } from "node:net";
import { BINDINGS, objectPath } from "../core/index.ts";
import { startLocalWorker } from "../worker/local.ts";
import { readMemory, workerdPid } from "./worker.ts";

/**
 * The workerd process's memory while the Worker refuses oversized chunked bodies (issue 14): a 90 MiB
 * chunked part list, three times, against the 2 MiB limit. The Worker reads through a byte-counting limit,
 * so the peak stays at the idle level plus about the limit (measured: idle 63 MiB, peak 68 MiB; reading the
 * body whole before the 413 took it to 317, then 421 MiB).
 *
 *   npm exec -- node bench/refuse.ts
 */
const MiB = 1024 * 1024;
const worker = await startLocalWorker();
try {
  const pid = await workerdPid();
  const memory = async () => {
    const m = await readMemory(pid);
    return { rssMiB: Math.round(m.rssMiB), peakRssMiB: Math.round(m.hwmMiB) };
  };
  const token = worker.bindings[BINDINGS.serverToken]!;
  const key = "backups/full/20260101T000000Z/refuse.db.zst";
  const created = await fetch(`${worker.url}${objectPath(key)}?uploads`, { method: "POST", headers: { "X-Server-Token": token } });
  const { uploadId } = (await created.json()) as { uploadId: string };
  await new Promise((r) => setTimeout(r, 500));
  const idle = await memory();
  const url = new URL(worker.url);
  const block = Buffer.alloc(256 * 1024, 0x61);
  const frame = Buffer.concat([Buffer.from(`${block.byteLength.toString(16)}\r\n`), block, Buffer.from("\r\n")]);
  const rounds: { status: string; sentMiB: number; rssMiB: number; peakRssMiB: number }[] = [];
  for (let round = 0; round < 3; round++) {
    const { status, sent } = await new Promise<{ status: string; sent: number }>((resolve) => {
      const socket = connect(Number(url.port), url.hostname);
      let answer = "";
      let sent = 0;
      socket.on("data", (d) => (answer += d));
      socket.on("error", () => undefined);
      socket.on("close", () => resolve({ status: answer.split("\r\n")[0] ?? "", sent }));
      socket.write(`POST ${objectPath(key)}?uploadId=${encodeURIComponent(uploadId)} HTTP/1.1\r\nHost: x\r\nX-Server-Token: ${token}\r\nTransfer-Encoding: chunked\r\n\r\n`);
      void (async () => {
        for (let i = 0; i < (90 * MiB) / block.byteLength && !answer && !socket.destroyed; i++) {
          sent += block.byteLength;
          if (!socket.write(frame)) await new Promise((r) => socket.once("drain", r));
        }
        if (!socket.destroyed) socket.end("0\r\n\r\n");
        setTimeout(() => socket.destroy(), 3000);
      })();
    });
    rounds.push({ status, sentMiB: Math.round((sent / MiB) * 10) / 10, ...(await memory()) });
  }
  console.log(JSON.stringify({ limitMiB: 2, bodyMiB: 90, idle, rounds }, null, 2));
} finally {
  await worker.stop();
}
