import { COMMON_OPTIONS, WORKER_OPTIONS, WORKER_USAGE, parseFlags, storeFromFlags, usageOf, type Command } from "../config.ts";
import { chainPosition, rebuildChain } from "../chain.ts";

/**
 * `r2backup chain`: the chain's head as the Worker keeps it (docs/design.md, "The chain"): how many sets, the tip,
 * the newest full and the Worker's clock. `--rebuild` (admin token) rebuilds the index from the manifests.
 */
const CHAIN_OPTIONS = { rebuild: { type: "boolean" } } as const;

export const chainCommand: Command = {
  usage: `r2backup chain [--rebuild] [--json]\n\n${usageOf(CHAIN_OPTIONS, {
    rebuild: { text: "read every manifest and write the index again (needs ADMIN_TOKEN as --token); sets that fork or do not continue the chain are left out" },
  })}\n${WORKER_USAGE}\n  --json                    print the head as JSON`,
  async run(args, ctx) {
    const { values } = parseFlags(args, { ...WORKER_OPTIONS, ...COMMON_OPTIONS, ...CHAIN_OPTIONS }, "chain");
    if (values.help) {
      ctx.io.stdout.write(`${this.usage}\n`);
      return 0;
    }
    const store = storeFromFlags(values, ctx.env, ctx.logger, ctx.io.signal);
    if (values.rebuild) {
      const { head, leftOut } = await rebuildChain(store);
      for (const l of leftOut) ctx.logger.warn(`left out of the chain: ${l.id}: ${l.reason}`, { id: l.id });
      if (values.json) ctx.io.stdout.write(`${JSON.stringify({ length: head.length, tip: head.tail.at(-1), leftOut }, null, 2)}\n`);
      else ctx.io.stdout.write(`rebuilt the chain: ${head.length} sets up to ${head.tail.at(-1)!.id}; ${leftOut.length} left out\n`);
      return 0;
    }
    const position = await chainPosition(store);
    const head = position.view.head;
    const summary = {
      length: head?.length ?? 0,
      segments: head?.segments.length ?? 0,
      tip: position.tip ?? null,
      newestFull: position.full ?? null,
      workerNow: position.view.clock().toISOString(),
      clockSkewSeconds: Math.round(position.view.skewMs / 1000),
    };
    if (values.json) ctx.io.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else if (!head) ctx.io.stdout.write("no chain yet (run: r2backup run --db <path> --kind full; a bucket from before 0.3: r2backup chain --rebuild with the admin token)\n");
    else {
      ctx.io.stdout.write(
        `${[
          `${summary.length} sets (${summary.segments} sealed segments + ${head.tail.length} in the head)`,
          `  tip          ${position.tip!.kind} ${position.tip!.id}, read at ${position.tip!.capturedAt}`,
          `  newest full  ${position.full ? `${position.full.id}, read at ${position.full.capturedAt}` : "none"}`,
          `  worker clock ${summary.workerNow} (this machine is ${summary.clockSkewSeconds} s off)`,
        ].join("\n")}\n`,
      );
    }
    return 0;
  },
};
