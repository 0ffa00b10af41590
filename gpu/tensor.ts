// Copyright 2026 the longctx authors. MIT license.

/**
 * GPU-resident tensors: the CPU {@linkcode Tensor} interface (`dtype`, `shape`,
 * `strides`, `offset`, `layout`) with a `GPUBuffer` in place of `data`, and
 * explicit, visible moves between host and device ({@linkcode upload},
 * {@linkcode download}).
 *
 * @module
 */

import type { AttentionState } from "../attention/types.ts";
import { contiguous, contiguousStrides, DTYPE_BYTES, numel, tensor } from "../tensor/tensor.ts";
import type { DTypeArrayMap, Layout, Tensor } from "../tensor/types.ts";
import { describeValue, requireNonNegativeInt } from "../tensor/validate.ts";
import { type GpuContext, STORAGE_USAGE } from "./device.ts";

/** Element types a GPU tensor holds. */
export type GpuDType = "f32" | "f16" | "i32";

/**
 * A strided view over a `GPUBuffer`: element `[i0, i1, …]` lives at element
 * index `offset + Σ i_k · strides[k]` of the buffer (byte offset × dtype size).
 * Kernels in this folder take row-major contiguous tensors with any `offset`.
 *
 * The buffer comes from the context's pool when created by this module;
 * {@linkcode releaseTensor} gives it back. Shape and dtype mean exactly what
 * they mean for a CPU {@linkcode Tensor}.
 */
export interface GpuTensor<D extends GpuDType = GpuDType> {
  /** Element type. */
  readonly dtype: D;
  /** Extent of each axis. */
  readonly shape: readonly number[];
  /** Element step of each axis. */
  readonly strides: readonly number[];
  /** Element index in `buffer` of element `[0, 0, …]`. */
  readonly offset: number;
  /** Backing storage (`STORAGE | COPY_SRC | COPY_DST`). */
  readonly buffer: GPUBuffer;
  /** Optional named layout of the axes. */
  readonly layout?: Layout;
}

/** {@linkcode AttentionState} on the GPU: `out` `[queryTokens, heads, headDim]`, `lse` `[queryTokens, heads]`, f32. */
export interface GpuAttentionState {
  /** Output, contiguous f32. */
  readonly out: GpuTensor<"f32">;
  /** Log-sum-exp per row, contiguous f32; an empty row holds the bits of `-Infinity`. */
  readonly lse: GpuTensor<"f32">;
}

/** Options of {@linkcode createGpuTensor}. */
export interface CreateGpuTensorOptions {
  /** Named layout. @default {undefined} */
  layout?: Layout;
  /** Buffer label. @default {"longctx tensor"} */
  label?: string;
}

/**
 * Allocates an uninitialised contiguous GPU tensor from the context's pool.
 *
 * @param gpu The context.
 * @param dtype Element type.
 * @param shape Extent of each axis.
 * @param options Layout and label.
 * @returns A tensor with offset 0 (contents undefined until written).
 * @throws {RangeError} If a shape entry is not a non-negative integer, or the
 *   bytes exceed `maxBufferSize`.
 *
 * @example A pooled f32 tensor (skipped without a GPU)
 * ```ts
 * import { createGpuTensor, releaseTensor, tryRequestGpu } from "@longctx/longctx/gpu";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const out = createGpuTensor(gpu, "f32", [1, 8, 32], { layout: "thd" });
 *   assert.deepEqual(out.strides, [256, 32, 1]);
 *   assert.ok(out.buffer.size >= 256 * 4);
 *   releaseTensor(gpu, out);
 *   gpu.destroy();
 * }
 * ```
 */
export function createGpuTensor<D extends GpuDType>(
  gpu: GpuContext,
  dtype: D,
  shape: readonly number[],
  options: CreateGpuTensorOptions = {},
): GpuTensor<D> {
  const action = "create GPU tensor";
  gpu.checkAlive(action);
  checkDType(action, dtype);
  shape.forEach((d, i) => requireNonNegativeInt(action, `shape[${i}]`, d));
  const bytes = numel(shape) * DTYPE_BYTES[dtype];
  checkBytes(gpu, action, bytes);
  const buffer = gpu.pool.acquire(bytes, STORAGE_USAGE, options.label ?? "longctx tensor");
  return {
    dtype,
    shape: [...shape],
    strides: contiguousStrides(shape),
    offset: 0,
    buffer,
    ...(options.layout !== undefined ? { layout: options.layout } : {}),
  };
}

/** Options of {@linkcode upload}. */
export interface UploadOptions {
  /** Store as this dtype (f32 ↔ f16 convert with round-to-nearest-even). @default {t.dtype} */
  dtype?: GpuDType;
  /** Buffer label. @default {"longctx tensor"} */
  label?: string;
}

/**
 * Copies a CPU tensor (any strides) to a new contiguous GPU tensor.
 * Synchronous: the bytes are queued with `writeBuffer` and visible to every
 * command submitted afterwards.
 *
 * @param gpu The context.
 * @param t A CPU tensor of dtype f32, f16 or i32.
 * @param options Target dtype and label.
 * @returns A contiguous GPU tensor with `t`'s shape and layout.
 * @throws {TypeError} If the dtype is not f32, f16 or i32.
 * @throws {RangeError} If the bytes exceed `maxBufferSize`.
 * @throws {GpuDeviceLostError} If the device is lost.
 *
 * @example Round trip through f16 storage (skipped without a GPU)
 * ```ts
 * import { download, releaseTensor, tryRequestGpu, upload } from "@longctx/longctx/gpu";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const host = randn([100, 2, 16], { seed: 1, layout: "thd" });
 *   const k = upload(gpu, host, { dtype: "f16" });
 *   const back = await download(gpu, k); // Float16Array storage, same shape
 *   assert.ok(back.data instanceof Float16Array);
 *   assert.deepEqual(back.shape, [100, 2, 16]);
 *   back.data.forEach((x, i) => assert.equal(x, Math.f16round(host.data[i]!))); // round to nearest even
 *   releaseTensor(gpu, k);
 *   gpu.destroy();
 * }
 * ```
 */
export function upload(gpu: GpuContext, t: Tensor, options: UploadOptions = {}): GpuTensor {
  const action = "upload tensor";
  if (t === null || typeof t !== "object" || !Array.isArray(t.shape)) {
    throw new TypeError(`Cannot ${action}: t must be a tensor, got ${describeValue(t)}`);
  }
  gpu.checkAlive(action);
  const dtype = options.dtype ?? (t.dtype as GpuDType);
  checkDType(action, dtype);
  checkDType(action, t.dtype);
  if ((dtype === "i32") !== (t.dtype === "i32")) {
    throw new TypeError(
      `Cannot ${action}: cannot convert between float and integer dtypes, got ${t.dtype} to ${dtype}`,
    );
  }
  const host = contiguous(t, dtype);
  const n = numel(t.shape);
  const bytes = n * DTYPE_BYTES[dtype];
  checkBytes(gpu, action, bytes);
  const buffer = gpu.pool.acquire(bytes, STORAGE_USAGE, options.label ?? "longctx tensor");
  const data = host.data as ArrayBufferView & { subarray(a: number, b: number): ArrayBufferView };
  gpu.write(buffer, 0, data.subarray(host.offset, host.offset + n));
  return {
    dtype,
    shape: [...t.shape],
    strides: contiguousStrides(t.shape),
    offset: 0,
    buffer,
    ...(t.layout !== undefined ? { layout: t.layout } : {}),
  };
}

/**
 * Copies a contiguous GPU tensor back to a new CPU tensor, after all
 * submitted work.
 *
 * @param gpu The context that owns the buffer.
 * @param t A row-major contiguous GPU tensor (any offset).
 * @returns A CPU tensor of the same dtype, shape and layout.
 * @throws {TypeError} If `t` is not contiguous.
 * @throws {GpuDeviceLostError} If the device is lost.
 */
export async function download<D extends GpuDType>(
  gpu: GpuContext,
  t: GpuTensor<D>,
): Promise<Tensor<D>> {
  requireContiguous("download tensor", "t", t);
  const n = numel(t.shape);
  const size = DTYPE_BYTES[t.dtype];
  const bytes = await gpu.read(t.buffer, t.offset * size, n * size);
  const ctor = ({ f32: Float32Array, f16: Float16Array, i32: Int32Array } as const)[t.dtype];
  const data = new ctor(bytes) as DTypeArrayMap[D];
  return tensor(
    data,
    t.shape,
    t.layout !== undefined ? { layout: t.layout } : {},
  ) as unknown as Tensor<D>;
}

/**
 * Downloads both halves of a {@linkcode GpuAttentionState}.
 *
 * @param gpu The context.
 * @param state A GPU attention state.
 * @returns The CPU {@linkcode AttentionState} (empty rows: `out = 0`, `lse = -Infinity`).
 */
export async function downloadState(
  gpu: GpuContext,
  state: GpuAttentionState,
): Promise<AttentionState> {
  const [out, lse] = await Promise.all([download(gpu, state.out), download(gpu, state.lse)]);
  return { out, lse };
}

/**
 * Returns a tensor's buffer to the context's pool. The tensor must not be used afterwards.
 *
 * @param gpu The context whose pool created the buffer.
 * @param t A tensor from {@linkcode createGpuTensor}, {@linkcode upload} or a kernel.
 * @throws {TypeError} If the buffer is not in use from this pool.
 */
export function releaseTensor(gpu: GpuContext, t: GpuTensor): void {
  gpu.pool.release(t.buffer);
}

/**
 * Returns both buffers of a {@linkcode GpuAttentionState} to the pool.
 *
 * @param gpu The context.
 * @param state A state a kernel returned.
 */
export function releaseState(gpu: GpuContext, state: GpuAttentionState): void {
  gpu.pool.release(state.out.buffer);
  gpu.pool.release(state.lse.buffer);
}

/**
 * Checks that a GPU tensor is row-major contiguous (axes of extent 1 may have
 * any stride); kernels in this folder need that.
 *
 * @param action What was being done.
 * @param name The argument's name.
 * @param t The tensor.
 * @throws {TypeError} If `t` is not a GPU tensor or not contiguous.
 */
export function requireContiguous(action: string, name: string, t: GpuTensor): void {
  if (t === null || typeof t !== "object" || !Array.isArray(t.shape) || !t.buffer) {
    throw new TypeError(`Cannot ${action}: ${name} must be a GPU tensor, got ${describeValue(t)}`);
  }
  let expected = 1;
  for (let i = t.shape.length - 1; i >= 0; i--) {
    const d = t.shape[i]!;
    if (d !== 1 && t.strides[i] !== expected) {
      throw new TypeError(
        `Cannot ${action}: ${name} must be row-major contiguous, got shape ${
          describeValue(t.shape)
        } with strides ${describeValue(t.strides)}`,
      );
    }
    expected *= d;
  }
}

function checkDType(action: string, dtype: unknown): void {
  if (dtype !== "f32" && dtype !== "f16" && dtype !== "i32") {
    throw new TypeError(
      `Cannot ${action}: dtype must be "f32", "f16" or "i32", got ${describeValue(dtype)}`,
    );
  }
}

function checkBytes(gpu: GpuContext, action: string, bytes: number): void {
  const max = gpu.limits.maxBufferSize;
  if (bytes > max) {
    throw new RangeError(
      `Cannot ${action}: needs ${bytes} bytes, but maxBufferSize is ${max}`,
    );
  }
}
