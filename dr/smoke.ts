import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { HEADERS, PATHS, checkWorkerUrl } from "../core/index.ts";
import { waitForWorker, type WaitForWorker } from "./health.ts";

/**
 * The post-deploy smoke check the workflows run after `pulumi up` (`node dr/smoke.ts`): the deployed
 * Worker answers `GET /api/health`, refuses a request without a token, and stores and returns a
 * `backups/state/` key written with the job's token (the only overwritable prefix, so a check never
 * leaves a locked object behind). Any failure fails the deploy.
 */

/** The key the check writes; overwritten by every check (docs/design.md, storage layout: `backups/state/`). */
export const SMOKE_KEY = "backups/state/smoke-check.json";

export interface SmokeStep {
  step: string;
  ok: boolean;
  detail: string;
}

export interface SmokeOptions {
  /** Seconds to wait for a new Worker to answer (default 300). */
  healthTimeoutMs?: number;
  wait?: WaitForWorker;
  /** What the check writes (default: the time and the GitHub run, when there is one). */
  marker?: string;
}

/** Runs the check; resolves with every step, failed ones included (the first failure ends the run). */
export async function smokeCheck(workerUrl: string, token: string, options: SmokeOptions = {}): Promise<SmokeStep[]> {
  const base = workerUrl.replace(/\/+$/, "");
  const steps: SmokeStep[] = [];
  const record = (step: string, ok: boolean, detail: string) => {
    steps.push({ step, ok, detail });
    return ok;
  };
  try {
    const health = await (options.wait ?? waitForWorker)(base, { timeoutMs: options.healthTimeoutMs ?? 300_000 });
    record("health", true, `${health.url} answered ${health.status} after ${health.attempts} attempt(s)`);
  } catch (error) {
    record("health", false, (error as Error).message);
    return steps;
  }
  const url = `${base}${PATHS.backups}/${SMOKE_KEY}`;
  // A Worker that answers health and then drops the connection fails the step it was in, named, not the script.
  let step = "refuses without a token";
  try {
    const anonymous = await fetch(url, { method: "GET" });
    await anonymous.body?.cancel();
    if (!record(step, anonymous.status === 401, `GET ${SMOKE_KEY} without a token answered ${anonymous.status} (want 401)`)) return steps;

    step = "write";
    const marker = options.marker ?? JSON.stringify({ checkedAt: new Date().toISOString(), run: process.env.GITHUB_RUN_ID ?? null });
    const auth = { [HEADERS.authorization]: `Bearer ${token}` };
    const put = await fetch(url, { method: "PUT", headers: { ...auth, "content-type": "application/json" }, body: marker });
    const putText = await put.text();
    // 401 is the Worker's answer to a token it does not know (a 403 would come from something in front of it).
    const refused = put.status === 401 ? " (SERVER_BYPASS_TOKEN is not this Worker's token: take the stack's serverToken output)" : "";
    if (!record(step, put.ok, `PUT ${SMOKE_KEY} answered ${put.status}${put.ok ? "" : ` ${putText.slice(0, 200)}${refused}`}`)) return steps;

    step = "read back";
    const get = await fetch(url, { headers: auth });
    const body = await get.text();
    record(
      "read back",
      get.ok && body === marker,
      get.ok
        ? body === marker
          ? `GET ${SMOKE_KEY} returned what was written`
          : `GET ${SMOKE_KEY} returned other bytes than were written`
        : `GET ${SMOKE_KEY} answered ${get.status}`,
    );
  } catch (error) {
    const cause = (error as Error & { cause?: { code?: string; message?: string } }).cause;
    record(step, false, `the Worker did not answer: ${(error as Error).message}${cause ? ` (${cause.code ?? cause.message ?? ""})` : ""}`);
  }
  return steps;
}

const USAGE = `usage: node dr/smoke.ts --worker-url <url>

Checks a deployed Worker after pulumi up: health, a refused anonymous request, and a write and read of
${SMOKE_KEY} with the job's token (env SERVER_BYPASS_TOKEN). Exit 0 passed, 1 failed, 2 bad usage.`;

/** The CLI: returns the exit code. */
export async function main(argv: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  let values: { "worker-url"?: string; "health-timeout"?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { "worker-url": { type: "string" }, "health-timeout": { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const token = env.SERVER_BYPASS_TOKEN ?? "";
  if (!values["worker-url"] || !token) {
    console.error(`smoke check: ${!values["worker-url"] ? "--worker-url is required" : "SERVER_BYPASS_TOKEN is not set"}\n\n${USAGE}`);
    return 2;
  }
  const checked = checkWorkerUrl(values["worker-url"], "--worker-url");
  if (!("origin" in checked)) {
    console.error(`smoke check: worker url '${checked.shown}': ${checked.reason} (${checked.hint})\n\n${USAGE}`);
    return 2;
  }
  const timeout = Number(values["health-timeout"] ?? 300);
  if (!(Number.isFinite(timeout) && timeout > 0)) {
    console.error(`smoke check: --health-timeout '${values["health-timeout"]}' is not a number of seconds above 0 (e.g. --health-timeout 300)\n\n${USAGE}`);
    return 2;
  }
  const steps = await smokeCheck(checked.origin, token, { healthTimeoutMs: timeout * 1000 });
  for (const s of steps) console.log(`${s.ok ? "ok  " : "FAIL"} ${s.step}: ${s.detail}`);
  return steps.every((s) => s.ok) ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await main(process.argv.slice(2));
