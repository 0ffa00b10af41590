// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * A tensor allocator over one shared `WebAssembly.Memory`, so that WASM kernels
 * read keys and values where they already are, with no copy per call.
 *
 * @module
 */

import { DTYPE_BYTES, numel, tensor } from "../tensor/tensor.ts";
import type { Layout, Tensor } from "../tensor/types.ts";
import {
  describeValue,
  requireNonNegativeInt,
  requireOneOf,
  requirePositiveInt,
} from "../tensor/validate.ts";
import {
  type HeapInternals,
  heapOfBuffer,
  instantiateKernel,
  type KernelExports,
  kernelSupported,
  MAX_PAGES,
  PAGE_BYTES,
  registerBuffer,
  registerHeap,
} from "./_wasm/kernel.ts";

/**
 * Which build of the attention kernel a {@linkcode WasmHeap} runs:
 *
 * - `"relaxed-simd"`: 128-bit SIMD with fused multiply-add (`f32x4.relaxed_madd`), for
 *   engines with the relaxed-SIMD proposal (V8 11.4+: Deno, Node 20+, Chrome 114+).
 * - `"simd"`: plain 128-bit SIMD (multiply, then add), for every engine with WASM SIMD.
 *   About 10% slower than `"relaxed-simd"` where both run (measured on the build machine).
 * - `"js"`: no WASM kernel; `denseAttentionWasm()` runs the pure-TS `denseAttention` on
 *   the heap's tensors (same results, reference speed). The fallback for engines
 *   without WASM SIMD.
 */
export type WasmKernelKind = "relaxed-simd" | "simd" | "js";

/** Default of {@linkcode WasmHeapOptions.maxBytes}: 1 GiB. */
export const DEFAULT_WASM_HEAP_MAX_BYTES: number = 1 << 30;

/** Every block starts on a 64-byte boundary (a cache line; a multiple of v128's 16). */
const ALIGN = 64;

/** Pages the memory starts with (1 MiB), before any allocation grows it. */
const INITIAL_PAGES = 16;

/** Options of {@linkcode WasmHeap.create}. */
export interface WasmHeapOptions {
  /**
   * Kernel build: `"auto"` takes the first of `"relaxed-simd"`, `"simd"`, `"js"` that this
   * engine supports; naming a build requires it.
   * @default {"auto"}
   */
  kernel?: "auto" | WasmKernelKind;
  /**
   * Most bytes the memory may grow to, rounded up to 64 KiB pages, at most 4 GiB (the
   * wasm32 limit). This is reserved address space; pages are committed as the heap grows.
   * @default {1 << 30} (1 GiB)
   */
  maxBytes?: number;
}

/** Options of {@linkcode WasmHeap.alloc}. */
export interface WasmHeapAllocOptions {
  /** Named layout of the axes, as in `zeros()`. @default {undefined} */
  layout?: Layout;
}

interface Range {
  start: number;
  end: number;
}

/**
 * An allocator of longctx tensors inside one shared `WebAssembly.Memory`, which
 * the WASM SIMD kernel (`denseAttentionWasm()`) reads in place.
 *
 * A tensor from {@linkcode WasmHeap.alloc} is an ordinary longctx `Tensor`:
 * its `data` is a `Float32Array` (or `Float16Array`) view into the heap's
 * memory, so it works with every other longctx function (views with
 * `sliceAxis`/`selectAxis`, `copyInto`, `denseAttention`, KV stores that write
 * into it). `denseAttentionWasm()` requires its keys and values to live
 * here: a kernel call then costs no copy of the cache.
 *
 * No WASM SIMD (an old engine) is a normal case: the heap then reports
 * `kernel === "js"` and `denseAttentionWasm()` runs the pure-TS reference on
 * the same tensors.
 *
 * The memory is `shared: true`, so growing it never detaches the views of
 * tensors already handed out (a non-shared memory detaches its `ArrayBuffer`
 * on `grow`), and workers could share it later. Browsers only allow shared
 * memory on cross-origin-isolated pages (`crossOriginIsolated === true`).
 *
 * Blocks come from a first-fit free list with coalescing; freed blocks are
 * reused, and the memory grows (never shrinks) when no free block fits. After
 * {@linkcode WasmHeap.free} the tensor's array still aliases the memory, as a
 * pointer does in C: do not use it.
 *
 * | cost | |
 * | --- | --- |
 * | `alloc` | O(free blocks) + zero-filling the block; may grow the memory |
 * | `free` | O(free blocks) |
 * | memory | `maxBytes` of address space reserved; bytes committed as used |
 *
 * @example Allocating a key cache in the heap and attending over it
 * ```ts
 * import { denseAttentionWasm, WasmHeap } from "@longctx/longctx/attention";
 * import { copyInto, randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const heap = await WasmHeap.create({ maxBytes: 16 << 20 });
 * const key = heap.alloc("f32", [64, 2, 8], { layout: "thd" }); // [tokens, kvHeads, headDim]
 * const value = heap.alloc("f32", [64, 2, 8], { layout: "thd" });
 * copyInto(key, randn([64, 2, 8], { seed: 1 }));
 * copyInto(value, randn([64, 2, 8], { seed: 2 }));
 * const query = randn([1, 4, 8], { seed: 3 }); // the query may live anywhere
 * const { out, lse } = denseAttentionWasm({ query, key, value });
 * assert.deepEqual(out.shape, [1, 4, 8]);
 * assert.ok(lse.data.every(Number.isFinite));
 * heap.free(key);
 * heap.free(value);
 * assert.equal(heap.bytesAllocated(), 0);
 * ```
 */
export class WasmHeap {
  /** The heap's memory (shared), e.g. to hand to a worker. */
  readonly memory: WebAssembly.Memory;
  /** The kernel build this heap runs (see {@linkcode WasmKernelKind}). */
  readonly kernel: WasmKernelKind;
  #maxPages: number;
  #internals: HeapInternals;
  #free: Range[] = [];
  #live = new Map<number, number>();
  #allocated = 0;
  #scratch: Range = { start: 0, end: 0 };
  #views: { f32: Float32Array; f64: Float64Array; i32: Int32Array } | undefined;

  private constructor(
    memory: WebAssembly.Memory,
    kind: WasmKernelKind,
    kernel: KernelExports | undefined,
    maxPages: number,
  ) {
    this.memory = memory;
    this.kernel = kind;
    this.#maxPages = maxPages;
    this.#internals = {
      memory,
      kind,
      kernel,
      scratch: (bytes) => this.#scratchAt(bytes),
      views: () => this.#currentViews(),
    };
    registerHeap(this, this.#internals);
    registerBuffer(memory.buffer, this.#internals);
    const start = alignUp(kernel?.heapBase() ?? 0, ALIGN) || ALIGN;
    this.#free.push({ start, end: memory.buffer.byteLength });
  }

  /**
   * Creates a heap: a shared memory and the WASM kernel instantiated over it.
   *
   * @param options The kernel build and the memory's maximum size.
   * @returns A promise of the heap (compiling the ~5 KB kernel is async; it is
   *   compiled once per process and instantiated once per heap).
   * @throws {RangeError} If `maxBytes` is not a positive integer of at most 4 GiB.
   * @throws {TypeError} If `kernel` is not `"auto"`, `"relaxed-simd"`, `"simd"` or `"js"`.
   * @throws {Error} If the runtime has no shared WebAssembly memory (a browser page that
   *   is not cross-origin isolated), or cannot compile the build named by `kernel`.
   *
   * @example A small heap, with the best kernel this engine runs
   * ```ts
   * import { WasmHeap } from "@longctx/longctx/attention";
   * import assert from "node:assert/strict";
   * const heap = await WasmHeap.create({ maxBytes: 1 << 20 });
   * assert.equal(heap.maxBytes, 1 << 20);
   * assert.ok(["relaxed-simd", "simd", "js"].includes(heap.kernel));
   * ```
   */
  static async create(options: WasmHeapOptions = {}): Promise<WasmHeap> {
    const action = "create WasmHeap";
    const maxBytes = requirePositiveInt(
      action,
      "maxBytes",
      options.maxBytes ?? DEFAULT_WASM_HEAP_MAX_BYTES,
    );
    const maxPages = Math.ceil(maxBytes / PAGE_BYTES);
    if (maxPages > MAX_PAGES) {
      throw new RangeError(
        `Cannot ${action}: maxBytes must be at most 4 GiB (${
          MAX_PAGES * PAGE_BYTES
        }), got ${maxBytes}`,
      );
    }
    const wanted = requireOneOf(
      action,
      "kernel",
      options.kernel ?? "auto",
      [
        "auto",
        "relaxed-simd",
        "simd",
        "js",
      ] as const,
    );
    const kind: WasmKernelKind = wanted !== "auto"
      ? wanted
      : kernelSupported("relaxed-simd")
      ? "relaxed-simd"
      : kernelSupported("simd")
      ? "simd"
      : "js";
    if (!kernelSupported(kind)) {
      throw new Error(
        `Cannot ${action}: this engine cannot compile the "${kind}" kernel (it needs WebAssembly SIMD${
          kind === "relaxed-simd" ? " and relaxed SIMD" : ""
        } and threads); use kernel "auto"`,
      );
    }
    let memory: WebAssembly.Memory;
    try {
      memory = new WebAssembly.Memory({
        initial: Math.min(INITIAL_PAGES, maxPages),
        maximum: maxPages,
        shared: true,
      });
    } catch (cause) {
      throw new Error(
        `Cannot ${action}: shared WebAssembly memory is unavailable (browsers need a cross-origin-isolated page), got ${cause}`,
        { cause },
      );
    }
    const kernel = kind === "js" ? undefined : await instantiateKernel(memory, kind);
    return new WasmHeap(memory, kind, kernel, maxPages);
  }

  /** The most bytes the memory may grow to (`maxBytes` rounded up to 64 KiB pages). */
  get maxBytes(): number {
    return this.#maxPages * PAGE_BYTES;
  }

  /** Bytes the memory holds now (it grows on demand, up to {@linkcode WasmHeap.maxBytes}). */
  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  /**
   * Allocates a zero-filled contiguous tensor in the heap.
   *
   * @param dtype `"f32"` or `"f16"`.
   * @param shape Extent of each axis, e.g. `[tokens, kvHeads, headDim]`.
   * @param options Optional named layout.
   * @returns A tensor whose `data` is a view of exactly its elements, starting on a
   *   64-byte boundary of the heap's memory.
   * @throws {TypeError} If `dtype` is not `"f32"`/`"f16"` or the layout does not fit.
   * @throws {RangeError} If the shape is invalid, or the heap would exceed `maxBytes`.
   *
   * @example Allocation, reuse after free
   * ```ts
   * import { WasmHeap } from "@longctx/longctx/attention";
   * import assert from "node:assert/strict";
   * const heap = await WasmHeap.create({ maxBytes: 4 << 20 });
   * const a = heap.alloc("f32", [3, 2, 4]);
   * assert.equal(a.data.length, 24);
   * assert.equal(a.data.byteOffset % 16, 0);
   * heap.free(a);
   * const b = heap.alloc("f16", [5, 4]);
   * assert.equal(b.data.byteOffset, a.data.byteOffset); // first fit reuses the block
   * ```
   */
  alloc<D extends "f32" | "f16">(
    dtype: D,
    shape: readonly number[],
    options: WasmHeapAllocOptions = {},
  ): Tensor<D> {
    const action = "allocate tensor in WasmHeap";
    if (dtype !== "f32" && dtype !== "f16") {
      throw new TypeError(
        `Cannot ${action}: dtype must be "f32" or "f16", got ${describeValue(dtype)}`,
      );
    }
    if (!Array.isArray(shape)) {
      throw new TypeError(`Cannot ${action}: shape must be an array, got ${describeValue(shape)}`);
    }
    shape.forEach((d, i) => requireNonNegativeInt(action, `shape[${i}]`, d));
    const n = numel(shape);
    const bytes = n * DTYPE_BYTES[dtype];
    const start = this.#allocBlock(action, bytes);
    const size = alignUp(Math.max(bytes, 1), ALIGN);
    const buffer = this.#buffer();
    const data = dtype === "f32"
      ? new Float32Array(buffer, start, n)
      : new Float16Array(buffer, start, n);
    data.fill(0);
    let t: Tensor<D>;
    try {
      t = tensor(data, shape, options) as unknown as Tensor<D>;
    } catch (error) {
      this.#releaseBlock(start, size);
      throw error;
    }
    this.#live.set(start, size);
    this.#allocated += size;
    return t;
  }

  /**
   * Returns a tensor's block to the heap. Views of it (`sliceAxis`, `selectAxis`)
   * share its `data` and free the same block.
   *
   * @param t A tensor from {@linkcode WasmHeap.alloc} of this heap, not yet freed.
   * @throws {TypeError} If `t` was not allocated by this heap or was already freed.
   *
   * @example
   * ```ts
   * import { WasmHeap } from "@longctx/longctx/attention";
   * import assert from "node:assert/strict";
   * const heap = await WasmHeap.create({ maxBytes: 1 << 20 });
   * const t = heap.alloc("f32", [4, 4]);
   * heap.free(t);
   * assert.throws(() => heap.free(t), TypeError);
   * ```
   */
  free(t: Tensor): void {
    const data = t?.data;
    const start = this.owns(t) ? data.byteOffset : -1;
    const size = this.#live.get(start);
    if (size === undefined) {
      throw new TypeError(
        `Cannot free tensor in WasmHeap: it must be a live allocation of this heap, got ${
          start < 0 ? "a tensor from elsewhere" : `a freed or unknown block at byte ${start}`
        }`,
      );
    }
    this.#live.delete(start);
    this.#allocated -= size;
    this.#releaseBlock(start, size);
  }

  /**
   * Whether a tensor's data lies in this heap's memory (what
   * `denseAttentionWasm()` requires of keys and values).
   *
   * @param t Any tensor.
   * @returns `true` if `t.data` is a view of this heap's memory.
   */
  owns(t: Tensor): boolean {
    const data = t?.data;
    return ArrayBuffer.isView(data) && heapOfBuffer(data.buffer) === this.#internals;
  }

  /**
   * Bytes held by live tensors, each rounded up to 64 bytes (the kernels' own scratch
   * is not counted).
   *
   * @returns A byte count; 0 once every tensor is freed.
   */
  bytesAllocated(): number {
    return this.#allocated;
  }

  #allocBlock(action: string, bytes: number): number {
    const size = alignUp(Math.max(bytes, 1), ALIGN);
    for (;;) {
      for (let i = 0; i < this.#free.length; i++) {
        const r = this.#free[i]!;
        if (r.end - r.start < size) continue;
        const start = r.start;
        r.start += size;
        if (r.start === r.end) this.#free.splice(i, 1);
        return start;
      }
      this.#grow(action, size);
    }
  }

  /** Grows the memory so that a block of `size` bytes fits at its end. */
  #grow(action: string, size: number): void {
    const end = this.memory.buffer.byteLength;
    const last = this.#free[this.#free.length - 1];
    const tail = last !== undefined && last.end === end ? last.end - last.start : 0;
    const pages = end / PAGE_BYTES;
    const need = Math.ceil((size - tail) / PAGE_BYTES);
    if (pages + need > this.#maxPages) {
      throw new RangeError(
        `Cannot ${action}: needs ${size} bytes, but only ${
          tail + (this.#maxPages - pages) * PAGE_BYTES
        } of maxBytes ${this.maxBytes} can be made free at the end of the heap`,
      );
    }
    // Grow by at least a quarter of the current size, so many small allocations do not
    // each create a new SharedArrayBuffer.
    const add = Math.min(Math.max(need, pages >> 2), this.#maxPages - pages);
    this.memory.grow(add);
    this.#releaseBlock(end, this.#buffer().byteLength - end);
  }

  /** Inserts [start, start + size) into the sorted free list, merging neighbours. */
  #releaseBlock(start: number, size: number): void {
    const free = this.#free;
    let i = 0;
    while (i < free.length && free[i]!.start < start) i++;
    const end = start + size;
    const prev = free[i - 1], next = free[i];
    if (prev !== undefined && prev.end === start) {
      prev.end = end;
      if (next !== undefined && next.start === end) {
        prev.end = next.end;
        free.splice(i, 1);
      }
    } else if (next !== undefined && next.start === end) {
      next.start = start;
    } else {
      free.splice(i, 0, { start, end });
    }
  }

  #scratchAt(bytes: number): number {
    const s = this.#scratch;
    if (s.end - s.start >= bytes) return s.start;
    if (s.end > s.start) this.#releaseBlock(s.start, s.end - s.start);
    const size = alignUp(Math.max(bytes, 1), PAGE_BYTES);
    const start = this.#allocBlock("allocate WASM kernel scratch", size);
    this.#scratch = { start, end: start + size };
    return start;
  }

  /** The memory's current buffer, registered as this heap's (growth makes a new one). */
  #buffer(): ArrayBufferLike {
    const buffer = this.memory.buffer;
    if (heapOfBuffer(buffer) !== this.#internals) registerBuffer(buffer, this.#internals);
    return buffer;
  }

  #currentViews(): { f32: Float32Array; f64: Float64Array; i32: Int32Array } {
    const buffer = this.#buffer();
    if (this.#views === undefined || this.#views.f32.buffer !== buffer) {
      this.#views = {
        f32: new Float32Array(buffer),
        f64: new Float64Array(buffer),
        i32: new Int32Array(buffer),
      };
    }
    return this.#views;
  }
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}
