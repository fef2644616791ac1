import { PATHS } from "../core/index.ts";

/**
 * Waits for a freshly deployed Worker to answer `GET /api/health`. A new Worker, route or workers.dev
 * subdomain can take a minute or more to answer everywhere, so this polls with a growing backoff.
 */

export interface WaitOptions {
  /** Give up after this long (default 300,000 ms). */
  timeoutMs?: number;
  /** First pause between attempts, doubled each time (default 500 ms), up to `maxDelayMs` (default 10 s). */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Per-request timeout (default 10 s). */
  requestTimeoutMs?: number;
  /** Called after each failed attempt (for the progress log). */
  onAttempt?: (info: { attempt: number; reason: string; nextDelayMs: number }) => void;
  /** Set to stop waiting early (Ctrl-C). */
  signal?: AbortSignal;
}

export interface HealthResult {
  url: string;
  attempts: number;
  elapsedMs: number;
  status: number;
  /** The health body, when it was JSON. */
  body?: unknown;
}

/** The health URL of a Worker base URL (which may carry a trailing slash). */
export function healthUrl(workerUrl: string): string {
  return `${workerUrl.replace(/\/+$/, "")}${PATHS.health}`;
}

/** Waits for the Worker: a 2xx from the health path. Throws with the last reason when the time is up. */
export type WaitForWorker = (workerUrl: string, options?: WaitOptions) => Promise<HealthResult>;

/** The real wait, over `fetch`. */
export const waitForWorker: WaitForWorker = async (workerUrl, options = {}) => {
  const url = healthUrl(workerUrl);
  const timeoutMs = options.timeoutMs ?? 300_000;
  const maxDelayMs = options.maxDelayMs ?? 10_000;
  let delay = options.initialDelayMs ?? 500;
  const started = Date.now();
  let attempt = 0;
  let reason = "not tried";
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  for (;;) {
    options.signal?.throwIfAborted();
    attempt++;
    try {
      const signals = [AbortSignal.timeout(requestTimeoutMs), ...(options.signal ? [options.signal] : [])];
      const res = await fetch(url, { headers: { accept: "application/json" }, signal: AbortSignal.any(signals), redirect: "follow" });
      const text = await res.text();
      if (res.ok) {
        const result: HealthResult = { url, attempts: attempt, elapsedMs: Date.now() - started, status: res.status };
        try {
          result.body = JSON.parse(text);
        } catch {
          // A plain-text health answer is still an answer.
        }
        return result;
      }
      reason = `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`;
    } catch (error) {
      options.signal?.throwIfAborted();
      const e = error as Error & { cause?: { code?: string; message?: string } };
      reason = e.name === "TimeoutError" ? `no answer within ${requestTimeoutMs} ms` : (e.cause?.code ?? e.cause?.message ?? e.message);
    }
    const elapsed = Date.now() - started;
    const pause = Math.min(delay, maxDelayMs);
    // Give up when the next attempt would start past the deadline, so the last reason is a real answer.
    if (elapsed + pause > timeoutMs) {
      throw Object.assign(new Error(`GET ${url}: ${reason} (${attempt} attempt${attempt === 1 ? "" : "s"} over ${Math.round(elapsed / 1000)} s)`), { attempts: attempt, reason });
    }
    options.onAttempt?.({ attempt, reason, nextDelayMs: pause });
    await sleep(pause, options.signal);
    delay *= 2;
  }
};

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
