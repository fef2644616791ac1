import { createReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { once } from "node:events";
import { DatabaseSync } from "node:sqlite";
import type { Pack } from "tar-stream";
import { JobError } from "./errors.ts";

/**
 * The markdown document export (`documents.tar.zst` before compression): every regular file of a directory
 * under its relative path, and optionally the rows of a query rendered as `query/<name>.md`. The tar is
 * produced as a stream, one entry at a time, with backpressure, so a large folder never sits in memory.
 */
export interface DocumentsSource {
  /** A folder of markdown documents (every regular file under it is archived). */
  dir?: string;
  /** A query against a snapshot whose rows become markdown files: first column the name, second the body. */
  query?: { sql: string; dbPath: string };
}

/** Regular files under `dir`, relative paths with '/' separators, sorted (symlinks are not followed). */
export async function listDocuments(dir: string): Promise<string[]> {
  let info;
  try {
    info = await stat(dir);
  } catch {
    throw new JobError("usage", `read documents '${dir}': no such directory`, { hint: "check --documents" });
  }
  if (!info.isDirectory()) throw new JobError("usage", `read documents '${dir}': not a directory`, { hint: "check --documents" });
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join("/"))
    .sort();
}

async function writeEntry(pack: Pack, name: string, size: number, chunks: AsyncIterable<Buffer> | Buffer[], mtime?: Date): Promise<void> {
  let done: (e?: Error | null) => void = () => {};
  const finished = new Promise<void>((resolve, reject) => {
    done = (e) => (e ? reject(e) : resolve());
  });
  const entry = pack.entry({ name, size, type: "file", mode: 0o644, ...(mtime ? { mtime } : {}) }, (e) => done(e));
  for await (const chunk of chunks) {
    if (!entry.write(chunk)) await once(entry as unknown as NodeJS.EventEmitter, "drain");
  }
  (entry as unknown as { end(): void }).end();
  await finished;
}

/** A safe file name for a query row: path-like names keep their '/' segments, nothing climbs out. */
function rowFileName(name: unknown, index: number): string {
  const raw = name === null || name === undefined || String(name).trim() === "" ? `row-${index + 1}` : String(name);
  const clean = raw
    .split(/[\\/]+/)
    .map((s) => s.replace(/[^A-Za-z0-9._ -]/g, "_").trim())
    .filter((s) => s !== "" && s !== "." && s !== "..")
    .join("/");
  const base = clean === "" ? `row-${index + 1}` : clean;
  return `query/${/\.(md|markdown)$/i.test(base) ? base : `${base}.md`}`;
}

/**
 * The tar stream of the documents; consume it (async iteration) to drive it. Reports the total input size
 * of the folder up front (`estimateBytes`) so the uploader can size its parts.
 */
export async function documentsTar(source: DocumentsSource): Promise<{ stream: AsyncIterable<Buffer>; estimateBytes: number; count: () => number }> {
  const files = source.dir ? await listDocuments(source.dir) : [];
  let estimateBytes = 0;
  const sizes: number[] = [];
  for (const f of files) {
    const s = await stat(join(source.dir!, f));
    sizes.push(s.size);
    estimateBytes += s.size + 1024;
  }
  let queryDb: DatabaseSync | undefined;
  if (source.query) {
    // Query output size is unknown up front; the default part size covers 160 GB.
    queryDb = new DatabaseSync(source.query.dbPath, { readOnly: true });
  }
  // tar-stream is loaded by the backups that export documents, not by every start of the CLI (issue 16).
  const pack = (await import("tar-stream")).default.pack();
  let count = 0;
  const produce = async () => {
    for (const [i, f] of files.entries()) {
      const path = join(source.dir!, f);
      const s = await stat(path);
      // A file that changes while it is read would break the tar framing: archive what was measured.
      await writeEntry(pack, f, sizes[i]!, createReadStream(path, { start: 0, end: Math.max(0, sizes[i]! - 1), highWaterMark: 1 << 16 }) as AsyncIterable<Buffer>, s.mtime);
      count++;
    }
    if (queryDb && source.query) {
      const seen = new Set<string>();
      let index = 0;
      const stmt = queryDb.prepare(source.query.sql);
      for (const row of stmt.iterate() as Iterable<Record<string, unknown>>) {
        const values = Object.values(row);
        let name = rowFileName(values[0], index);
        for (let n = 2; seen.has(name); n++) name = name.replace(/(\.[^.]*)?$/, (ext) => `-${n}${ext}`);
        seen.add(name);
        const body = values.length > 1 ? values[1] : values[0];
        const bytes = body instanceof Uint8Array ? Buffer.from(body) : Buffer.from(body === null || body === undefined ? "" : String(body), "utf8");
        await writeEntry(pack, name, bytes.length, [bytes]);
        index++;
        count++;
      }
    }
    pack.finalize();
  };
  produce()
    .catch((e: unknown) => pack.destroy(e as Error))
    .finally(() => queryDb?.close());
  return { stream: pack as unknown as AsyncIterable<Buffer>, estimateBytes, count: () => count };
}
