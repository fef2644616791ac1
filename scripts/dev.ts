import { rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { BINDINGS, PATHS } from "../core/index.ts";
import { DEV_TOKENS, startLocalWorker, type FailoverMode } from "../worker/local.ts";

/**
 * `npm run dev [-- --port 8787] [--replica] [--failover off|replica|replica-only]`: the Worker (the same esbuild bundle that is deployed) in
 * Miniflare on 127.0.0.1, with a local R2 persisted under `.mf-data/` (git-ignored), until Ctrl-C.
 * Tokens and variables come from the environment when set, else the dev defaults printed at start.
 */
const { values } = parseArgs({
  options: {
    port: { type: "string", default: process.env.PORT ?? "8787" },
    replica: { type: "boolean", default: false },
    failover: { type: "string", default: "off" },
    "pid-file": { type: "string" },
    "persist-dir": { type: "string", default: fileURLToPath(new URL("../.mf-data/", import.meta.url)) },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  console.log(`usage: npm run dev -- [--port <n>] [--replica] [--failover off|replica|replica-only] [--persist-dir <dir>] [--pid-file <path>]

--pid-file writes this process's id there (removed on exit), for scripts that stop it with kill.
--failover does locally what the stack config \`failover\` does (docs/disaster-recovery.md section 4):
replica serves the replica bucket and fills the primary from it; replica-only leaves the primary unbound.

Runs the Worker locally until Ctrl-C. Environment: SERVER_BYPASS_TOKEN, ADMIN_TOKEN, MAX_BACKUP_AGE_HOURS,
ALERT_WEBHOOK_URL, REPLICA_MAX_LAG_HOURS, REPLICA_COPY_PART_MIB, REPLICA_COPY_PARTS_PER_RUN,
REPLICA_COPY_TIME_BUDGET_SECONDS (defaults: the dev tokens printed at start, 7 hours, no webhook, 12 hours,
64 MiB parts, 64 parts and 600 s per cron run).`);
  process.exit(0);
}

const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`npm run dev: port '${values.port}' is not a port number (try --port 8787)`);
  process.exit(2);
}

const failover = values.failover as FailoverMode;
if (!["off", "replica", "replica-only"].includes(failover)) {
  console.error(`npm run dev: --failover '${values.failover}' is not off, replica or replica-only`);
  process.exit(2);
}

const env = (name: string) => (process.env[name] ? process.env[name] : undefined);
const bindings: Record<string, string | undefined> = {
  [BINDINGS.serverToken]: env(BINDINGS.serverToken) ?? DEV_TOKENS[BINDINGS.serverToken],
  [BINDINGS.adminToken]: env(BINDINGS.adminToken) ?? DEV_TOKENS[BINDINGS.adminToken],
  [BINDINGS.maxBackupAgeHours]: env(BINDINGS.maxBackupAgeHours) ?? "7",
  [BINDINGS.alertWebhookUrl]: env(BINDINGS.alertWebhookUrl),
  [BINDINGS.replicaMaxLagHours]: env(BINDINGS.replicaMaxLagHours),
  // The replica copy's tuning (worker/src/replicate.ts), e.g. small parts to watch a copy resume.
  REPLICA_COPY_PART_MIB: env("REPLICA_COPY_PART_MIB"),
  REPLICA_COPY_PARTS_PER_RUN: env("REPLICA_COPY_PARTS_PER_RUN"),
  REPLICA_COPY_TIME_BUDGET_SECONDS: env("REPLICA_COPY_TIME_BUDGET_SECONDS"),
};

let worker;
try {
  worker = await startLocalWorker({ port, persistDir: values["persist-dir"], bindings, replica: values.replica, failover, triggerHandlers: true });
} catch (error) {
  console.error(`npm run dev: start the local Worker on port ${port}: ${error instanceof Error ? error.message : String(error)}`);
  console.error("(is another process on that port? try --port 0 for a free one)");
  process.exit(1);
}

const pidFile = values["pid-file"];
if (pidFile) writeFileSync(pidFile, `${process.pid}\n`);

const server = worker.bindings[BINDINGS.serverToken];
const admin = worker.bindings[BINDINGS.adminToken];
console.log(`Worker:        ${worker.url}   (local R2 in ${values["persist-dir"]}${failover === "replica" ? ", FAILOVER: the replica bucket serves, the primary is filled from it" : failover === "replica-only" ? ", FAILOVER: the replica bucket serves, the primary is not bound" : values.replica ? ", replica bucket bound" : ""})
Job token:     ${BINDINGS.serverToken}=${server}
Admin token:   ${BINDINGS.adminToken}=${admin}
Try:           curl -s -H 'X-Server-Token: ${server}' ${worker.url}${PATHS.status}
Cron trigger:  curl -s ${worker.url}/cdn-cgi/handler/scheduled
For the job:   export R2_WORKER_URL=${worker.url} SERVER_BYPASS_TOKEN=${server}
Ctrl-C stops it.`);

let stopping = false;
const stop = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  console.log(`\n${signal}: stopping the local Worker`);
  await worker.stop();
  if (pidFile) rmSync(pidFile, { force: true });
  process.exit(0);
};
process.on("SIGINT", () => void stop("SIGINT"));
process.on("SIGTERM", () => void stop("SIGTERM"));
