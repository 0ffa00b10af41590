// Copyright 2026 the longctx authors. MIT license.

/**
 * A pool of `GPUBuffer`s keyed by `size:usage` (the tfjs `BufferManager`
 * idea), so kernels that run every decode step reuse their temporaries
 * instead of creating buffers, with byte counters that tests and benches read.
 *
 * @module
 */

import { describeValue, requireNonNegativeInt } from "../tensor/validate.ts";

/** Sizes are rounded up to a multiple of this many bytes before keying. */
export const POOL_SIZE_GRANULARITY = 256;

/** Counters of a {@linkcode BufferPool}. */
export interface BufferPoolStats {
  /** Bytes of every buffer the pool created and has not destroyed. */
  bytesAllocated: number;
  /** Bytes of buffers handed out and not yet released. */
  bytesInUse: number;
  /** Bytes of released buffers waiting for reuse (`bytesAllocated − bytesInUse`). */
  bytesFree: number;
  /** `createBuffer` calls made by the pool. */
  created: number;
  /** Acquisitions served from the free lists. */
  reused: number;
  /** Buffers handed out and not yet released. */
  buffersInUse: number;
  /** Buffers on the free lists. */
  buffersFree: number;
}

/**
 * Hands out `GPUBuffer`s by `(size, usage)` and takes them back for reuse.
 *
 * `acquire` rounds the size up to {@linkcode POOL_SIZE_GRANULARITY} bytes and
 * returns a free buffer of that key, or creates one. `release` puts it back on
 * its free list. Releasing right after `queue.submit` is safe: WebGPU runs
 * queue operations in order, so a later `writeBuffer` or dispatch that reuses
 * the buffer happens after the submitted work that read it. (A `MAP_READ`
 * staging buffer is released only after `unmap`.)
 *
 * | operation | time | allocates |
 * | --- | --- | --- |
 * | `acquire` | O(1) | a `GPUBuffer` only when the key's free list is empty |
 * | `release` | O(1) | nothing |
 * | `trim` | O(free buffers) | nothing; destroys free buffers |
 *
 * @example Reuse after release (skipped without a GPU)
 * ```ts
 * import { tryRequestGpu } from "@longctx/longctx/gpu";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const a = gpu.pool.acquire(1000, GPUBufferUsage.STORAGE, "scratch");
 *   gpu.pool.release(a);
 *   const b = gpu.pool.acquire(900, GPUBufferUsage.STORAGE, "scratch"); // same 1024-byte key
 *   assert.equal(a, b);
 *   assert.equal(b.size, 1024);
 *   assert.equal(gpu.pool.stats().reused, 1);
 *   gpu.pool.release(b);
 *   gpu.destroy(); // trims the pool's free buffers, then the device
 * }
 * ```
 */
export class BufferPool {
  #device: GPUDevice;
  #free = new Map<string, GPUBuffer[]>();
  #inUse = new Map<GPUBuffer, string>();
  #bytesAllocated = 0;
  #bytesInUse = 0;
  #created = 0;
  #reused = 0;
  #buffersFree = 0;

  /**
   * Creates an empty pool over a device.
   *
   * @param device The device buffers are created on.
   */
  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /**
   * Returns a buffer of at least `size` bytes with exactly `usage`.
   *
   * @param size Bytes needed, a non-negative integer (0 gets the smallest buffer).
   * @param usage `GPUBufferUsage` flags.
   * @param label Label given to a newly created buffer.
   * @returns A buffer of `roundUp(max(size, 1), 256)` bytes, owned by the caller until released.
   * @throws {RangeError} If `size` is not a non-negative integer.
   */
  acquire(size: number, usage: GPUBufferUsageFlags, label = "longctx pooled buffer"): GPUBuffer {
    requireNonNegativeInt("acquire GPU buffer", "size", size);
    const bytes = Math.ceil(Math.max(size, 1) / POOL_SIZE_GRANULARITY) * POOL_SIZE_GRANULARITY;
    const key = `${bytes}:${usage}`;
    const list = this.#free.get(key);
    let buffer = list?.pop();
    if (buffer !== undefined) {
      this.#reused++;
      this.#buffersFree--;
    } else {
      buffer = this.#device.createBuffer({ label, size: bytes, usage });
      this.#created++;
      this.#bytesAllocated += bytes;
    }
    this.#inUse.set(buffer, key);
    this.#bytesInUse += bytes;
    return buffer;
  }

  /**
   * Returns a buffer obtained from {@linkcode BufferPool.acquire} to its free list.
   *
   * @param buffer A buffer this pool handed out and that is not released yet.
   * @throws {TypeError} If the buffer is not in use from this pool (double release,
   *   or a buffer the pool did not create).
   */
  release(buffer: GPUBuffer): void {
    const key = this.#inUse.get(buffer);
    if (key === undefined) {
      throw new TypeError(
        `Cannot release GPU buffer: it is not in use from this pool, got ${
          describeValue(buffer?.label)
        }`,
      );
    }
    this.#inUse.delete(buffer);
    this.#bytesInUse -= buffer.size;
    let list = this.#free.get(key);
    if (list === undefined) this.#free.set(key, list = []);
    list.push(buffer);
    this.#buffersFree++;
  }

  /** Whether `buffer` is currently handed out by this pool. */
  owns(buffer: GPUBuffer): boolean {
    return this.#inUse.has(buffer);
  }

  /** Destroys every free buffer (buffers in use are untouched). */
  trim(): void {
    for (const list of this.#free.values()) {
      for (const b of list) {
        this.#bytesAllocated -= b.size;
        b.destroy();
      }
    }
    this.#free.clear();
    this.#buffersFree = 0;
  }

  /**
   * Current counters.
   *
   * @returns A fresh {@linkcode BufferPoolStats} object.
   */
  stats(): BufferPoolStats {
    return {
      bytesAllocated: this.#bytesAllocated,
      bytesInUse: this.#bytesInUse,
      bytesFree: this.#bytesAllocated - this.#bytesInUse,
      created: this.#created,
      reused: this.#reused,
      buffersInUse: this.#inUse.size,
      buffersFree: this.#buffersFree,
    };
  }
}
