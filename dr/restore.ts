/**
 * The restore step of a disaster recovery, behind an injected interface: the orchestrator hands over the
 * Worker's URL and token and gets back what was restored. `jobRestorer()` is the real one, the backup
 * engine's `restore()` (job/restore/) over the Worker API, imported only when a restore actually runs.
 */

export interface RestoreRequest {
  /** The Worker's base URL, from the stack's `workerUrl` output. */
  workerUrl: string;
  /** `SERVER_BYPASS_TOKEN`: read and write, never delete. Never logged. */
  token: string;
  /** Database file (or directory, for a backup of several databases) to restore to. */
  to: string;
  /** `to` is the app's data directory: each database goes back to its recorded path under it (restore --data-dir). */
  dataDir?: boolean;
  /** The point in time: a Date, or the newest complete backup. */
  at: Date | "latest";
  /** Replace an existing target. */
  force: boolean;
  /** Plan only: download nothing, change nothing. */
  dryRun: boolean;
  onProgress?: (line: string) => void;
}

/** What the restore did (or, for a dry run, would do). The shape of job/restore's `RestoreResult`. */
export interface RestoreOutcome {
  at: string;
  /** The backup time the restored database reflects. */
  restoresTo: string;
  full: { kind: string; id: string; ts: string };
  chain: { kind: string; id: string; ts: string }[];
  notes: string[];
  dryRun: boolean;
  targets: { source: string; path: string; existed: boolean; size: number; uncompressedSize: number }[];
  bytes: number;
  integrity: string;
  durationMs: number;
}

export interface Restorer {
  restore(request: RestoreRequest): Promise<RestoreOutcome>;
}

/**
 * The real restore: job/restore's `restore()` reading through an `HttpStore` on the Worker. It refuses an
 * existing target without `force` and never leaves the target half-written (job/restore/index.ts).
 */
export function jobRestorer(): Restorer {
  return {
    async restore(request) {
      // Imported when a restore runs: loading dr/ (and --help, and a dry run that stops early) stays light.
      const engine = await import("../job/restore/index.ts");
      const { HttpStore } = await import("../job/store/http-store.ts");
      const store = new HttpStore({ url: request.workerUrl, token: request.token });
      let lastPhase = "";
      return engine.restore({
        store,
        ...(request.dataDir ? { dataDir: request.to } : { to: request.to }),
        at: request.at,
        force: request.force,
        dryRun: request.dryRun,
        onProgress: (p) => {
          // One line per phase and object; byte counters would flood the log.
          const line = `${p.phase}${p.key ? ` ${p.key}` : ""}${p.message ? `: ${p.message}` : ""}`;
          if (line !== lastPhase) request.onProgress?.(line);
          lastPhase = line;
        },
      });
    },
  };
}
