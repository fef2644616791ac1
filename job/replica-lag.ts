import { HEADERS, PATHS, type ApiReplicaStatus, type ApiStatus } from "../core/api.ts";
import { send } from "./http.ts";

/**
 * The replica's lag as the Worker reports it (`GET /api/status`, docs/design.md "Replica and failover"),
 * read by the job after each backup so CloudWatch gets it as a metric (`ReplicaLagSets`, `ReplicaLagHours`)
 * where monitoring is on. Undefined when the Worker binds no replica. The Worker's own cron check posts the
 * same lag to its webhook, so this is the CloudWatch half of the alarm only.
 */
export function workerReplicaLag(url: string, token: string, timeoutMs = 10_000): () => Promise<ApiReplicaStatus | undefined> {
  return async () => {
    const response = await send(`${url.replace(/\/$/, "")}${PATHS.status}`, { headers: { [HEADERS.serverToken]: token }, signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) {
      response.discard();
      throw new Error(`read replica lag from '${PATHS.status}': the Worker answered ${response.status}`);
    }
    return ((await response.json()) as ApiStatus).replica;
  };
}
