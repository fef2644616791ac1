import type { Env } from "./env.ts";
import { handleRequest } from "./routes.ts";
import { runScheduled } from "./scheduled.ts";

/** The Worker: the API of docs/design.md on fetch, the freshness check and replica copy on the cron trigger. */
export default {
  fetch(request, env, ctx) {
    return handleRequest(request, env, ctx);
  },
  // Freshness is judged against the clock now, not the controller's (possibly late) scheduled time.
  async scheduled(_controller, env) {
    await runScheduled(env, new Date());
  },
} satisfies ExportedHandler<Env>;
