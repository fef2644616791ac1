import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";

/**
 * Runs a command as a child process and measures its wall time and peak resident memory (VmHWM from
 * /proc, sampled while it runs; the kernel keeps the high-water mark, so sampling only has to be alive).
 * For a pipeline (`sh -c "a | b"`), pass `tree: true` to sum the peak of every process in it.
 */
export interface Measured {
  ms: number;
  peakRssMiB: number;
  /** User + system CPU seconds of the command and the children it waited for (GNU time), with `cpu: true`. */
  cpuSeconds?: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

async function readStatus(pid: number): Promise<{ hwmKiB: number; rssKiB: number; children: number[] } | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const num = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
    let children: number[] = [];
    try {
      const tasks = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8");
      children = tasks.trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      // no children file on this kernel: only the root process is measured
    }
    return { hwmKiB: num("VmHWM"), rssKiB: num("VmRSS"), children };
  } catch {
    return undefined; // the process has exited
  }
}

/** Peak memory of a running process (and, with `tree`, its descendants), sampled every `everyMs`. */
export function samplePeakRss(pid: number, options: { tree?: boolean; everyMs?: number; skipRoot?: boolean } = {}): { stop(): Promise<number> } {
  const peaks = new Map<number, number>();
  let running = true;
  const loop = (async () => {
    while (running) {
      const queue = [pid];
      while (queue.length) {
        const p = queue.shift()!;
        const s = await readStatus(p);
        if (!s) continue;
        peaks.set(p, Math.max(peaks.get(p) ?? 0, s.hwmKiB, s.rssKiB));
        if (options.tree) queue.push(...s.children);
      }
      await new Promise((r) => setTimeout(r, options.everyMs ?? 25));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      const values = [...peaks.entries()].filter(([p]) => !options.skipRoot || p !== pid).map(([, v]) => v);
      // skipRoot: the root is GNU time, the measured command is its child (and the child's own children).
      return (options.tree ? values.reduce((a, b) => a + b, 0) : options.skipRoot ? Math.max(0, ...values) : (peaks.get(pid) ?? 0)) / 1024;
    },
  };
}

const TIME_MARK = "__bench_cpu__";

/** A measured command that must have succeeded: otherwise an error naming the bench, the step and the end of its stderr. */
export function succeeded<M extends Measured>(bench: string, what: string, m: M, tail = 1500): M {
  if (m.code !== 0) throw new Error(`bench ${bench}: ${what} exited ${m.code}: ${m.stderr.slice(-tail)}`);
  return m;
}

export function runMeasured(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; tree?: boolean; cpu?: boolean } = {}): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    // GNU time reports the CPU of the command and its waited-for children; it execs the command, so the
    // sampled tree below starts one process higher (time's own few hundred KiB are in `tree` sums only).
    const [cmd, argv] = options.cpu ? ["/usr/bin/time", ["-f", `${TIME_MARK} %U %S`, command, ...args]] : [command, args];
    const child = spawn(cmd as string, argv as string[], { env: options.env ?? process.env, cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const sampler =
      child.pid === undefined
        ? undefined
        : samplePeakRss(child.pid, { tree: (options.tree ?? false) || (options.cpu ?? false), ...(options.cpu && !options.tree ? { skipRoot: true } : {}) });
    child.on("error", reject);
    child.on("close", async (code) => {
      const ms = performance.now() - start;
      const peakRssMiB = (await sampler?.stop()) ?? 0;
      let cpuSeconds: number | undefined;
      if (options.cpu) {
        const m = new RegExp(`${TIME_MARK} ([\\d.]+) ([\\d.]+)\\s*$`).exec(stderr);
        if (m) cpuSeconds = Number(m[1]) + Number(m[2]);
        stderr = stderr.replace(new RegExp(`${TIME_MARK}.*\\s*$`), "");
      }
      resolve({ ms, peakRssMiB, code, stdout, stderr, ...(cpuSeconds !== undefined ? { cpuSeconds } : {}) });
    });
  });
}

/**
 * The Node flags a bin file asks for on its shebang line (`#!/usr/bin/env -S node --flag ...`), so a
 * benchmark runs `r2backup` the way its bin link (and `npm run backup`) does: `[execPath, ...flags, bin]`.
 */
export function nodeFlagsOf(bin: string): string[] {
  const first = readFileSync(bin, "utf8").split("\n", 1)[0] ?? "";
  const m = /^#!\S*env -S node((?:\s+--\S+)*)\s*$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
}
