import { parentPort, workerData } from "node:worker_threads";

// A host's backup thread (bench/library-host.ts --thread), written as the README's "backup() on a thread of the
// app": plain JavaScript (no type stripping, which an app's thread does not pay either), its own store and the
// database by path (an open connection cannot cross threads), one result back.
const { backup, HttpStore } = await import(workerData.library);
const store = new HttpStore({ url: process.env.R2_WORKER_URL, token: process.env.SERVER_BYPASS_TOKEN });
const result = await backup({ store, databases: [{ path: workerData.db, source: "host" }], kind: "full", tmpDir: workerData.tmpDir, lockFile: false, promote: false });
parentPort.postMessage({ id: result.id });
