// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Loading the WASM attention kernel, and the link between a `WasmHeap`'s memory and
 * the kernels that read it (private: nothing here is part of the public API).
 *
 * @module
 */

import type { WasmKernelKind } from "../wasm_heap.ts";
import {
  ATTENTION_WASM_RELAXED_SIMD_BASE64,
  ATTENTION_WASM_SIMD_BASE64,
} from "./attention_wasm.ts";

/** 64 KiB pages the kernel module declares as its memory maximum (4 GiB, wasm32's limit). */
export const MAX_PAGES = 65536;

/** Bytes per WebAssembly page. */
export const PAGE_BYTES = 65536;

/**
 * `attend` of attention.as.ts. Pointers are byte addresses in the heap's memory,
 * strides are in bytes. See the layout table at the top of attention.as.ts.
 */
export type AttendFn = (
  q: number,
  acc: number,
  m: number,
  l: number,
  vis: number,
  heads: number,
  s: number,
  groups: number,
  headDim: number,
  key: number,
  keyTokenStride: number,
  keyHeadStride: number,
  value: number,
  valueTokenStride: number,
  valueHeadStride: number,
  count: number,
  scale: number,
  softCap: number,
) => void;

/** The kernel module's exports. */
export interface KernelExports {
  /** The blocked online-softmax fold. */
  attend: AttendFn;
  /** First byte after the module's static data. */
  heapBase(): number;
  /** Keys per block: `s` takes 16 bytes per key. */
  blockKeys(): number;
}

const BASE64: Readonly<Record<Exclude<WasmKernelKind, "js">, string>> = {
  "relaxed-simd": ATTENTION_WASM_RELAXED_SIMD_BASE64,
  simd: ATTENTION_WASM_SIMD_BASE64,
};

const bytesCache = new Map<string, Uint8Array<ArrayBuffer>>();
const compiled = new Map<string, Promise<WebAssembly.Module>>();

function kernelBytes(kind: Exclude<WasmKernelKind, "js">): Uint8Array<ArrayBuffer> {
  let bytes = bytesCache.get(kind);
  if (bytes === undefined) {
    bytes = Uint8Array.from(atob(BASE64[kind]), (c) => c.charCodeAt(0));
    bytesCache.set(kind, bytes);
  }
  return bytes;
}

/**
 * Whether this engine can compile a kernel build (`"js"` always can).
 *
 * @param kind A kernel build.
 * @returns `WebAssembly.validate` of its bytes.
 */
export function kernelSupported(kind: WasmKernelKind): boolean {
  if (kind === "js") return true;
  try {
    return WebAssembly.validate(kernelBytes(kind));
  } catch {
    return false;
  }
}

/**
 * Compiles a kernel build once per process and instantiates it over `memory`.
 *
 * @param memory A shared memory with at most {@linkcode MAX_PAGES} pages.
 * @param kind A build the engine supports.
 * @returns The instance's exports.
 */
export async function instantiateKernel(
  memory: WebAssembly.Memory,
  kind: Exclude<WasmKernelKind, "js">,
): Promise<KernelExports> {
  let module = compiled.get(kind);
  if (module === undefined) {
    module = WebAssembly.compile(kernelBytes(kind));
    compiled.set(kind, module);
  }
  const instance = await WebAssembly.instantiate(await module, { env: { memory } });
  return instance.exports as unknown as KernelExports;
}

/** What the kernels need from a heap, kept off its public surface. */
export interface HeapInternals {
  /** The heap's memory. */
  readonly memory: WebAssembly.Memory;
  /** The build in use. */
  readonly kind: WasmKernelKind;
  /** The kernel instantiated over that memory (`undefined` for `"js"`). */
  readonly kernel: KernelExports | undefined;
  /**
   * Address of a 64-byte aligned scratch region of at least `bytes`, reused across calls
   * (grown, never shrunk). May grow the memory.
   */
  scratch(bytes: number): number;
  /** Views of the whole memory as it is now (refreshed after growth). */
  views(): { f32: Float32Array; f64: Float64Array; i32: Int32Array };
}

/** Every buffer of every live heap's memory → that heap's internals. */
const byBuffer = new WeakMap<ArrayBufferLike, HeapInternals>();
/** Heap objects → their internals. */
const byHeap = new WeakMap<object, HeapInternals>();

/** Links a heap object to its internals (called by the `WasmHeap` constructor). */
export function registerHeap(heap: object, internals: HeapInternals): void {
  byHeap.set(heap, internals);
}

/**
 * Records that `buffer` is (a `SharedArrayBuffer` of) a heap's memory. Growing a shared
 * memory makes a new buffer object for the same bytes, so a heap registers each one.
 */
export function registerBuffer(buffer: ArrayBufferLike, internals: HeapInternals): void {
  byBuffer.set(buffer, internals);
}

/** The internals of a `WasmHeap`, or `undefined` if `heap` is not one. */
export function heapInternals(heap: unknown): HeapInternals | undefined {
  return typeof heap === "object" && heap !== null ? byHeap.get(heap) : undefined;
}

/** The internals of the heap whose memory `buffer` is, or `undefined`. */
export function heapOfBuffer(buffer: ArrayBufferLike): HeapInternals | undefined {
  return byBuffer.get(buffer);
}
