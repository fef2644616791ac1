import { Transform, type TransformCallback } from "node:stream";
import { promisify } from "node:util";
import { zstdDecompress, type ZstdOptions } from "node:zlib";

/** What the cutter reads next (`skip`: bytes it passes without reading; `broken`: not a stream it knows). */
type CutterState = "magic" | "skippableLength" | "frameHeader" | "blockHeader" | "skip" | "broken";

/**
 * Cuts a zstd stream's chunks where its frames end, so a decoder is never handed the end of one frame and the
 * start of the next in one write.
 *
 * Why: Node's streaming `createZstdDecompress` (24.x) drops or misreads what follows a frame when one write
 * finishes that frame without filling its output buffer and holds the next frame's bytes after it. Backups keep
 * frames ending where the decoder's buffer fills (stream.ts, FRAME_BYTES), but a frame written, then flushed
 * (0.2.0 until now), ends with an empty 3-byte block: when the network cut a chunk inside it, the frame's data
 * had filled the buffer, and the next write finished the frame with no output and went on into the next frame,
 * "Unknown frame descriptor". The backup was intact (`zstd -d` read it) but the restore failed with exit 8, and
 * where the cut fell was up to the network: 4 of 5 restores of one 1 GiB backup failed over the local Worker.
 * Fed frame by frame, the decoder finishes each frame with its input used up and starts the next on a fresh
 * write (test/job/zstd-frames.test.ts cuts every way around a frame end).
 *
 * The cutter follows the frame format (RFC 8878, 3.1): a frame header, blocks (a 3-byte header each, then their
 * bytes; one byte for an RLE block), an optional 4-byte checksum; skippable frames are a magic number, a 4-byte
 * length and that many bytes. On anything else it stops cutting and passes the rest through whole: the decoder
 * then reports what is wrong with the bytes.
 */
export class ZstdFrameCutter {
  /** What the next bytes are. */
  #state: CutterState = "magic";
  /** Bytes of the current field gathered so far (a field is at most 14 bytes: the largest frame header). */
  #field = Buffer.alloc(14);
  #have = 0;
  #need = 4;
  /** Bytes to pass before the next field (a block's bytes, a checksum, a skippable frame's content). */
  #skip = 0;
  /** The current block is the frame's last; then `#checksum` bytes end the frame. */
  #lastBlock = false;
  #checksum = 0;
  /** Data frames begun so far; the first of them (1 is the first) whose header says it carries no content checksum. */
  frames = 0;
  firstUnchecked: number | undefined;

  /** True between frames: the bytes cut so far end where a frame ends (the last piece of the last `cut` ended one). */
  get betweenFrames(): boolean {
    return this.#state === "magic" && this.#have === 0;
  }

  /** `chunk` as consecutive pieces, each ending where `chunk` or a frame ends. */
  cut(chunk: Uint8Array): Uint8Array[] {
    const pieces: Uint8Array[] = [];
    let start = 0;
    let at = 0;
    while (at < chunk.length && this.#state !== "broken") {
      if (this.#state === "skip") {
        const n = Math.min(this.#skip, chunk.length - at);
        at += n;
        this.#skip -= n;
        if (this.#skip === 0) {
          if (this.#lastBlock) {
            // The frame ends here (its checksum, if any, was skipped with its last block).
            pieces.push(chunk.subarray(start, at));
            start = at;
            this.#expect("magic", 4);
          } else {
            this.#expect("blockHeader", 3);
          }
        }
        continue;
      }
      const n = Math.min(this.#need - this.#have, chunk.length - at);
      this.#field.set(chunk.subarray(at, at + n), this.#have);
      this.#have += n;
      at += n;
      if (this.#have === this.#need) this.#onField();
      // (#onField moved the state on, which TypeScript's narrowing does not see.)
      if ((this.#state as CutterState) === "skip" && this.#skip === 0 && this.#lastBlock) {
        // An empty last block (and no checksum): the frame ends right after its header.
        pieces.push(chunk.subarray(start, at));
        start = at;
        this.#expect("magic", 4);
      }
    }
    if (start < chunk.length) pieces.push(chunk.subarray(start));
    return pieces;
  }

  #expect(state: Exclude<CutterState, "skip" | "broken">, bytes: number): void {
    this.#state = state;
    this.#have = 0;
    this.#need = bytes;
  }

  #onField(): void {
    const f = this.#field;
    switch (this.#state) {
      case "magic": {
        const magic = f.readUInt32LE(0);
        if (magic === 0xfd2fb528) {
          // Frame_Header_Descriptor first: it says how long the rest of the header is.
          this.#lastBlock = false;
          this.#expect("frameHeader", 1);
        } else if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) {
          this.#expect("skippableLength", 4);
        } else {
          this.#state = "broken";
        }
        return;
      }
      case "skippableLength":
        this.#skip = f.readUInt32LE(0);
        this.#lastBlock = true; // the frame ends with its content
        this.#state = "skip";
        return;
      case "frameHeader": {
        const fhd = f[0]!;
        if (this.#need === 1) {
          if ((fhd & 0x08) !== 0) {
            this.#state = "broken"; // a reserved bit set: not a frame this cutter knows
            return;
          }
          const single = (fhd & 0x20) !== 0;
          const rest = (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]! + [single ? 1 : 0, 2, 4, 8][fhd >> 6]!;
          this.#checksum = (fhd & 0x04) !== 0 ? 4 : 0;
          this.frames++;
          if (this.#checksum === 0) this.firstUnchecked ??= this.frames;
          if (rest > 0) {
            this.#need = 1 + rest; // keep the descriptor gathered, read the rest after it
            return;
          }
        }
        this.#expect("blockHeader", 3);
        return;
      }
      case "blockHeader": {
        const header = f.readUIntLE(0, 3);
        const type = (header >> 1) & 3;
        if (type === 3) {
          this.#state = "broken"; // reserved block type
          return;
        }
        this.#lastBlock = (header & 1) === 1;
        this.#skip = (type === 1 ? 1 : header >>> 3) + (this.#lastBlock ? this.#checksum : 0);
        this.#state = "skip";
        return;
      }
    }
  }
}

/** The refusal of a stream whose manifest says every frame carries its checksum, once a frame without one was cut. */
function uncheckedFrame(cutter: ZstdFrameCutter): Error | undefined {
  if (cutter.firstUnchecked === undefined) return undefined;
  return new Error(`zstd frame ${cutter.firstUnchecked} carries no content checksum, and the manifest says every frame does`);
}

/**
 * A stream stage that passes a zstd stream on cut where its frames end (see ZstdFrameCutter). With
 * `requireChecksums` (a manifest that says every frame carries its content checksum, core/manifest.ts
 * CONTENT_CHECKSUM), a frame without one fails the stream before its bytes go on: the decoder would take it
 * unchecked.
 */
export function frameAligned(options: { requireChecksums?: boolean } = {}): Transform {
  const cutter = new ZstdFrameCutter();
  return new Transform({
    highWaterMark: 1 << 20, // as the stages around it in a restore (job/restore/download.ts)
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      const pieces = cutter.cut(chunk);
      const unchecked = options.requireChecksums ? uncheckedFrame(cutter) : undefined;
      if (unchecked) {
        done(unchecked);
        return;
      }
      for (const piece of pieces) this.push(piece);
      done();
    },
  });
}

const decodeFrame = promisify(zstdDecompress) as (frame: Uint8Array, options: ZstdOptions) => Promise<Buffer>;

/**
 * A stream stage that decodes a zstd stream of whole frames of at most `maxFrameBytes` each (a database object
 * from `compressFile`: job/stream.ts, FRAME_BYTES), `inFlight` frames at once on the libuv pool, and passes the
 * decoded frames on in order. The serial decoder (`createZstdDecompress`) keeps one core busy; a restore's
 * download of 1 GiB spends most of its time there (bench/results).
 *
 * Each frame is handed to zstd alone (cut by ZstdFrameCutter): Node's one-shot decoder reads only the first frame
 * of its input when that frame ends with room left in the output buffer, and drops the rest without an error.
 * zstd checks every frame's content checksum. Memory stays bounded whatever the bytes: a frame that decodes
 * to more than `maxFrameBytes` fails (zstd stops at that size), and so does one whose compressed bytes exceed
 * what such a frame can take, before they are all held. With `requireChecksums`, a frame without a checksum fails.
 */
export function parallelFrameDecoder(options: { maxFrameBytes: number; inFlight: number; requireChecksums?: boolean }): Transform {
  const cutter = new ZstdFrameCutter();
  // zstd stores incompressible data as raw blocks: 3 header bytes per 128 KiB block, a frame header and a checksum.
  const maxCompressed = options.maxFrameBytes + 64 * 1024;
  const decodeOptions = { chunkSize: options.maxFrameBytes + 64, maxOutputLength: options.maxFrameBytes } as ZstdOptions;
  const queue: Promise<Buffer>[] = [];
  let pieces: Uint8Array[] = [];
  let held = 0;
  let frame = 0;
  const submit = () => {
    const bytes = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, held);
    frame++;
    const n = frame;
    const decoded = decodeFrame(bytes, decodeOptions).catch((e: unknown) => {
      throw new Error(`zstd frame ${n}: ${(e as Error).message}`);
    });
    decoded.catch(() => {}); // awaited in order below; a later frame's failure is reported when its turn comes
    queue.push(decoded);
    pieces = [];
    held = 0;
  };
  async function drainTo(stream: Transform, limit: number): Promise<void> {
    while (queue.length > limit) stream.push(await queue.shift()!);
  }
  return new Transform({
    highWaterMark: 1 << 20, // as the stages around it in a restore (job/restore/download.ts)
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      const cut = cutter.cut(chunk);
      const unchecked = options.requireChecksums ? uncheckedFrame(cutter) : undefined;
      if (unchecked) {
        done(unchecked);
        return;
      }
      for (let i = 0; i < cut.length; i++) {
        const piece = cut[i]!;
        pieces.push(piece);
        held += piece.byteLength;
        if (held > maxCompressed) {
          done(new Error(`zstd frame ${frame + 1} is over ${maxCompressed} bytes compressed: not a frame of at most ${options.maxFrameBytes} bytes`));
          return;
        }
        if (i < cut.length - 1 || cutter.betweenFrames) submit();
      }
      drainTo(this, options.inFlight - 1).then(() => done(), done);
    },
    flush(done: TransformCallback) {
      if (held > 0) {
        done(new Error(`the zstd stream ends inside frame ${frame + 1}`));
        return;
      }
      drainTo(this, 0).then(() => done(), done);
    },
  });
}
