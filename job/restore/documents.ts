import { createWriteStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import type { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { JobError } from "../errors.ts";
import { tempPathFor } from "./replace.ts";

/**
 * The documents adapter of restore (`--documents-to`): `documents.tar.zst` is extracted into a temporary
 * directory beside the target and moved into place only after the whole restore succeeded. Entry names
 * are checked: only regular files, relative, without `..`, so an archive cannot write outside the target.
 */

/** Refuses a documents directory that exists and is not empty, unless `force`. */
export async function checkDocumentsTarget(dir: string, force: boolean): Promise<{ exists: boolean }> {
  const abs = resolve(dir);
  const st = await stat(abs).catch(() => undefined);
  if (!st) {
    const parent = await stat(dirname(abs)).catch(() => undefined);
    if (!parent?.isDirectory())
      throw new JobError("usage", `restore documents to '${dir}': the directory '${dirname(abs)}' does not exist`, { hint: `create it first: mkdir -p ${dirname(abs)}` });
    return { exists: false };
  }
  if (!st.isDirectory()) throw new JobError("usage", `restore documents to '${dir}': it is a file`, { hint: "give a directory for --documents-to" });
  const empty = (await readdir(abs)).length === 0;
  if (!empty && !force) {
    throw new JobError("targetExists", `restore documents to '${dir}': the directory is not empty`, { hint: "nothing was changed; run again with --force to replace it" });
  }
  return { exists: !empty };
}

function safeEntryPath(root: string, name: string): string {
  const clean = name.replace(/^\.\/+/, "");
  const parts = clean.split("/");
  if (!clean || clean.startsWith("/") || parts.some((p) => p === ".." || p === "") || clean.includes("\\") || clean.includes("\u0000")) {
    throw new JobError("integrity", `extract documents entry '${name}': not a plain relative path`, { hint: "the archive is not one this tool wrote" });
  }
  const path = resolve(root, ...parts);
  if (!path.startsWith(root + sep)) throw new JobError("integrity", `extract documents entry '${name}': it points outside the target`);
  return path;
}

/** A Writable that extracts a tar stream into `root` (created); resolves `files()` with what it wrote. */
export function tarExtractor(root: string): { sink: Writable; files: () => number } {
  const extract = tar.extract();
  // pipeline() reports the error; this keeps a late second emit of it (streamx) from being unhandled.
  extract.on("error", () => {});
  let count = 0;
  extract.on("entry", (header, stream, next) => {
    // Deferred: next() emits the following entry synchronously, and its failure must not surface inside
    // this entry's promise chain (where nothing would handle it).
    const done = (e?: unknown) => setImmediate(() => (e ? extract.destroy(e as Error) : next()));
    if (header.type === "directory") {
      stream.resume();
      return done();
    }
    if (header.type !== "file") {
      stream.resume();
      return done(new JobError("integrity", `extract documents entry '${header.name}': a ${header.type}, only regular files are restored`));
    }
    let path: string;
    try {
      path = safeEntryPath(root, header.name);
    } catch (e) {
      stream.resume();
      return done(e);
    }
    mkdir(dirname(path), { recursive: true })
      .then(() => pipeline(stream, createWriteStream(path, { flags: "wx" })))
      .then(() => {
        count++;
        done();
      }, done);
  });
  return { sink: extract as unknown as Writable, files: () => count };
}

/** A temporary directory beside `dir`, created. */
export async function documentsTemp(dir: string): Promise<string> {
  const temp = tempPathFor(dir);
  await mkdir(temp);
  return temp;
}

/** Moves the extracted documents into place; an existing directory is replaced (the caller checked --force). */
export async function replaceDocuments(temp: string, dir: string): Promise<void> {
  const abs = resolve(dir);
  const st = await stat(abs).catch(() => undefined);
  if (!st) return rename(temp, abs);
  // Two renames, then removal: the documents directory is never half old, half new.
  const old = join(dirname(abs), `.${basename(abs)}.pre-restore-${process.pid}`);
  await rename(abs, old);
  await rename(temp, abs);
  await rm(old, { recursive: true, force: true });
}
