import { readFileSync } from "node:fs";

/** This package's version (its package.json, beside the sources or the built files); 0.0.0 when unreadable. */
export const TOOL_VERSION: string = (() => {
  try {
    return String((JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version?: string }).version ?? "0.0.0");
  } catch {
    return "0.0.0";
  }
})();
