/**
 * Buffers that start on a memory page, for reading large files.
 *
 * A read from the page cache is the kernel copying whole pages (each starting on a page) into the buffer. When
 * the buffer starts 1 to 31 bytes past a page, that copy runs ~4x slower (measured on this project's AMD EPYC VM:
 * 0.20 s of system time per 256 MiB, against 0.05 s at 0 or 32 bytes and more past a page; writes are not
 * affected). `Buffer.allocUnsafe` of 1 MiB is a fresh glibc mmap chunk that starts 16 bytes past its page: the
 * worst case, and what every large read buffer of the job was. Reading the 1 GiB benchmark database into such
 * blocks cost 0.78 s of system time, and 0.24 s into these.
 *
 * A WebAssembly memory is mapped on its own pages, so a view of it starts on one. Each is a separate mapping
 * (with its address space reserved ahead, none of it resident until touched), freed when it is collected.
 * Where one cannot be had (an engine without WebAssembly, address space exhausted) plain buffers are returned:
 * the same bytes, read more slowly.
 */

/** The one part of WebAssembly used here (the project's TypeScript libs do not declare it). */
type WasmMemory = new (descriptor: { initial: number; maximum: number }) => { buffer: ArrayBuffer };

/** WebAssembly's page: memories are sized in these. */
const WASM_PAGE_BYTES = 64 * 1024;

/** `count` buffers of `bytes` each, every one starting on a page boundary of one shared mapping. */
export function pageAlignedBuffers(count: number, bytes: number): Buffer[] {
  // Each buffer is rounded up to whole WebAssembly pages, so the next one starts on a page too.
  const stride = Math.ceil(bytes / WASM_PAGE_BYTES) * WASM_PAGE_BYTES;
  const pages = (stride * count) / WASM_PAGE_BYTES;
  let memory: { buffer: ArrayBuffer } | undefined;
  try {
    const Memory = (globalThis as { WebAssembly?: { Memory: WasmMemory } }).WebAssembly?.Memory;
    memory = Memory ? new Memory({ initial: pages, maximum: pages }) : undefined;
  } catch {
    memory = undefined;
  }
  return Array.from({ length: count }, (_, i) => (memory ? Buffer.from(memory.buffer, i * stride, bytes) : Buffer.allocUnsafe(bytes)));
}
