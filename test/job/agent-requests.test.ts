import { createServer, request as httpRequest, type Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import type { BackupKind, BackupResult } from "../../job/backup.ts";
import { createAgentHandler, listen } from "../../job/commands/agent.ts";

/**
 * The agent's requests (issue 14): it authenticates, reads and checks a request within a short timeout
 * before it takes the lock, so a slow client cannot hold it; `kind` is honoured from the query or the body,
 * or refused; a body that is not a JSON object is a 400 with the API's JSON error, never a TypeError.
 */

const TOKEN = "agent-requests-token-0123456789";
let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** An agent whose backups are stubs that record their kind and finish at once. */
async function startAgent(requestTimeoutMs: number): Promise<{ url: string; kinds: BackupKind[] }> {
  const kinds: BackupKind[] = [];
  const handler = createAgentHandler({
    token: TOKEN,
    requestTimeoutMs,
    run: async (kind) => {
      kinds.push(kind);
      return { kind, id: "20260101T000000Z", manifestKey: "k", manifest: {}, warnings: [], durationMs: 1, storedBytes: 0 } as unknown as BackupResult;
    },
  });
  server = createServer(handler);
  return { url: await listen(server, "127.0.0.1", 0), kinds };
}

const post = (url: string, body?: string, query = "") =>
  fetch(`${url}/backup${query}`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" }, ...(body === undefined ? {} : { body }) });

describe("agent requests", () => {
  it("a client that sends its body slowly is cut off at the timeout and never holds the lock", async () => {
    const agent = await startAgent(400);
    const slow = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${agent.url}/backup`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, "content-length": "100" } }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      });
      req.on("error", () => undefined);
      req.write("{");
    });
    await new Promise((r) => setTimeout(r, 100));
    // Meanwhile a well-formed request is served, not told that a backup is running.
    const other = await post(agent.url, '{"kind":"full"}');
    expect(other.status).toBe(200);
    expect(await other.text()).toMatch(/"type":"result","ok":true/);
    const cut = await slow;
    expect(cut.status).toBe(408);
    expect(JSON.parse(cut.body)).toMatchObject({ error: "request_timeout" });
    expect(agent.kinds).toEqual(["full"]);
  });

  it("kind comes from ?kind= or the body; an unknown or contradictory kind is 400", async () => {
    const agent = await startAgent(2000);
    expect((await post(agent.url, undefined, "?kind=full")).status).toBe(200);
    expect((await post(agent.url, '{"kind":"incremental"}')).status).toBe(200);
    expect((await post(agent.url, "")).status).toBe(200);
    expect(agent.kinds).toEqual(["full", "incremental", "auto"]);
    for (const [query, body] of [
      ["?kind=weekly", undefined],
      ["?kind=full", '{"kind":"incremental"}'],
      ["", '{"kind":7}'],
    ] as const) {
      const res = await post(agent.url, body, query);
      expect(res.status, `${query} ${body}`).toBe(400);
      expect(await res.json()).toMatchObject({ error: "bad_request" });
    }
    expect(agent.kinds).toHaveLength(3);
  });

  it("a body that is not a JSON object (null, an array, a number, not JSON) is 400 JSON naming it", async () => {
    const agent = await startAgent(2000);
    for (const body of ["null", "[]", "42", "{kind:"]) {
      const res = await post(agent.url, body);
      expect(res.status, body).toBe(400);
      const answer = (await res.json()) as { error: string; message: string };
      expect(answer.error).toBe("bad_request");
      expect(answer.message).toMatch(/^POST \/backup: /);
      expect(answer.message).not.toMatch(/TypeError|Cannot read/);
    }
    expect(agent.kinds).toEqual([]);
  });
});
