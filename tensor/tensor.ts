// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Creating tensors and taking views of them.
 *
 * @module
 */

import type { DType, DTypeArrayMap, Layout, Tensor } from "./types.ts";
import { describeValue, requireNonNegativeInt } from "./validate.ts";

const ARRAY_CTORS = {
  f32: Float32Array,
  f16: Float16Array,
  i8: Int8Array,
  u8: Uint8Array,
  i32: Int32Array,
} as const;

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = Object.freeze({
  f32: 4,
  f16: 2,
  i8: 1,
  u8: 1,
  i32: 4,
});

const LAYOUT_RANK: Readonly<Record<Layout, number>> = { thd: 3, htd: 3, td: 2 };

/**
 * Allocates a zero-filled typed array of a dtype.
 *
 * @param dtype Element type.
 * @param length Number of elements.
 * @returns A new typed array.
 *
 * @example
 * ```ts
 * import { allocArray } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * assert.ok(allocArray("f16", 3) instanceof Float16Array);
 * ```
 */
export function allocArray<D extends DType>(dtype: D, length: number): DTypeArrayMap[D] {
  const ctor = ARRAY_CTORS[dtype];
  if (ctor === undefined) {
    throw new TypeError(
      `Cannot allocate array: dtype must be one of "f32", "f16", "i8", "u8", "i32", got ${
        describeValue(dtype)
      }`,
    );
  }
  requireNonNegativeInt("allocate array", "length", length);
  return new ctor(length) as DTypeArrayMap[D];
}

/**
 * Returns the dtype of a typed array this library stores.
 *
 * @param data A typed array.
 * @returns Its dtype.
 * @throws {TypeError} For unsupported arrays (e.g. `Float64Array`).
 *
 * @example
 * ```ts
 * import { dtypeOf } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * assert.equal(dtypeOf(new Float32Array(1)), "f32");
 * ```
 */
export function dtypeOf(data: ArrayBufferView): DType {
  if (data instanceof Float32Array) return "f32";
  if (data instanceof Float16Array) return "f16";
  if (data instanceof Int8Array) return "i8";
  if (data instanceof Uint8Array) return "u8";
  if (data instanceof Int32Array) return "i32";
  throw new TypeError(
    `Cannot determine dtype: data must be a Float32Array, Float16Array, Int8Array, Uint8Array or Int32Array, got ${
      describeValue(data)
    }`,
  );
}

/**
 * Row-major (C-order) strides for a shape.
 *
 * @param shape Extent of each axis.
 * @returns Strides in elements.
 *
 * @example
 * ```ts
 * import { contiguousStrides } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * assert.deepEqual(contiguousStrides([2, 3, 4]), [12, 4, 1]);
 * ```
 */
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

/**
 * Number of elements of a shape.
 *
 * @param shape Extent of each axis.
 * @returns The product of the extents (1 for a scalar shape `[]`).
 *
 * @example
 * ```ts
 * import { numel } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * assert.equal(numel([2, 3, 4]), 24);
 * ```
 */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function validateShape(action: string, shape: readonly number[]): void {
  if (!Array.isArray(shape)) {
    throw new TypeError(`Cannot ${action}: shape must be an array, got ${describeValue(shape)}`);
  }
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw new RangeError(
        `Cannot ${action}: shape[${i}] must be a non-negative integer, got ${
          describeValue(d)
        } in shape ${describeValue(shape)}`,
      );
    }
  }
}

function validateLayout(action: string, layout: Layout | undefined, rank: number): void {
  if (layout === undefined) return;
  const want = LAYOUT_RANK[layout];
  if (want === undefined) {
    throw new TypeError(
      `Cannot ${action}: layout must be one of "thd", "htd", "td", got ${describeValue(layout)}`,
    );
  }
  if (want !== rank) {
    throw new TypeError(
      `Cannot ${action}: layout "${layout}" needs rank ${want}, got rank ${rank}`,
    );
  }
}

/** Options for {@linkcode tensor}. */
export interface TensorOptions {
  /** Named layout of the axes. @default {undefined} */
  layout?: Layout;
}

/**
 * Wraps a typed array as a contiguous tensor (no copy).
 *
 * @param data Storage; its length must equal the product of `shape`.
 * @param shape Extent of each axis.
 * @param options Optional named layout.
 * @returns A row-major tensor view over `data`.
 * @throws {TypeError} If the array type is unsupported or the layout does not fit the rank.
 * @throws {RangeError} If `data.length` does not match the shape.
 *
 * @example Wrapping keys laid out as [tokens, heads, headDim]
 * ```ts
 * import { tensor } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const k = tensor(new Float32Array(2 * 3 * 4), [2, 3, 4], { layout: "thd" });
 * assert.deepEqual(k.strides, [12, 4, 1]);
 * ```
 */
export function tensor<A extends DTypeArrayMap[DType]>(
  data: A,
  shape: readonly number[],
  options: TensorOptions = {},
): Tensor<DTypeOfArray<A>> {
  const dtype = dtypeOf(data) as DTypeOfArray<A>;
  validateShape("create tensor", shape);
  validateLayout("create tensor", options.layout, shape.length);
  const n = numel(shape);
  if (data.length !== n) {
    throw new RangeError(
      `Cannot create tensor: data length must equal the product of shape ${
        describeValue(shape)
      } (${n}), got ${data.length}`,
    );
  }
  const t: Tensor<DTypeOfArray<A>> = {
    dtype,
    shape: [...shape],
    strides: contiguousStrides(shape),
    offset: 0,
    data: data as unknown as DTypeArrayMap[DTypeOfArray<A>],
    ...(options.layout !== undefined ? { layout: options.layout } : {}),
  };
  return t;
}

/** The dtype that stores a given typed array type. */
export type DTypeOfArray<A> = A extends Float32Array ? "f32"
  : A extends Float16Array ? "f16"
  : A extends Int8Array ? "i8"
  : A extends Uint8Array ? "u8"
  : A extends Int32Array ? "i32"
  : never;

/**
 * Allocates a zero-filled contiguous tensor.
 *
 * @param dtype Element type.
 * @param shape Extent of each axis.
 * @param options Optional named layout.
 * @returns A new tensor.
 *
 * @example
 * ```ts
 * import { zeros } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const t = zeros("f16", [4, 2, 8], { layout: "thd" });
 * assert.equal(t.data.length, 64);
 * ```
 */
export function zeros<D extends DType>(
  dtype: D,
  shape: readonly number[],
  options: TensorOptions = {},
): Tensor<D> {
  validateShape("create tensor", shape);
  validateLayout("create tensor", options.layout, shape.length);
  return {
    dtype,
    shape: [...shape],
    strides: contiguousStrides(shape),
    offset: 0,
    data: allocArray(dtype, numel(shape)),
    ...(options.layout !== undefined ? { layout: options.layout } : {}),
  };
}

/**
 * Whether a tensor's elements are laid out row-major without gaps starting at
 * `offset` (axes of extent 1 may have any stride).
 *
 * @param t A tensor.
 * @returns `true` when `t.data.subarray(t.offset, t.offset + numel)` holds it in order.
 *
 * @example
 * ```ts
 * import { isContiguous, selectAxis, zeros } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const t = zeros("f32", [3, 2, 4]);
 * assert.ok(isContiguous(selectAxis(t, 0, 1)));
 * assert.ok(!isContiguous(selectAxis(t, 1, 1)));
 * ```
 */
export function isContiguous(t: Tensor): boolean {
  let expected = 1;
  for (let i = t.shape.length - 1; i >= 0; i--) {
    const d = t.shape[i]!;
    if (d !== 1 && t.strides[i] !== expected) return false;
    expected *= d;
  }
  return true;
}

function checkAxis(action: string, t: Tensor, axis: number): void {
  if (!Number.isInteger(axis) || axis < 0 || axis >= t.shape.length) {
    throw new RangeError(
      `Cannot ${action}: axis must be an integer in [0, ${t.shape.length}), got ${
        describeValue(axis)
      }`,
    );
  }
}

/**
 * A view of `[start, end)` along one axis (no copy).
 *
 * @param t A tensor.
 * @param axis The axis to slice.
 * @param start First index kept.
 * @param end One past the last index kept.
 * @returns A view sharing `t.data`; the layout name is kept.
 * @throws {RangeError} If the axis or range is out of bounds.
 *
 * @example Tokens 2..5 of a [tokens, heads, headDim] tensor
 * ```ts
 * import { sliceAxis, zeros } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const k = zeros("f32", [8, 2, 4], { layout: "thd" });
 * const w = sliceAxis(k, 0, 2, 5);
 * assert.deepEqual(w.shape, [3, 2, 4]);
 * assert.equal(w.offset, 16);
 * ```
 */
export function sliceAxis<D extends DType>(
  t: Tensor<D>,
  axis: number,
  start: number,
  end: number,
): Tensor<D> {
  checkAxis("slice tensor", t, axis);
  const n = t.shape[axis]!;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > n || start > end) {
    throw new RangeError(
      `Cannot slice tensor: range must satisfy 0 <= start <= end <= ${n} on axis ${axis}, got [${
        describeValue(start)
      }, ${describeValue(end)})`,
    );
  }
  const shape = [...t.shape];
  shape[axis] = end - start;
  return {
    ...t,
    shape,
    strides: [...t.strides],
    offset: t.offset + start * t.strides[axis]!,
  };
}

/**
 * A view of one index along an axis, with that axis removed (no copy). Picking
 * head `h` of a `"thd"` tensor gives a `"td"` view.
 *
 * @param t A tensor.
 * @param axis The axis to index.
 * @param index The index kept.
 * @returns A view of rank `t.shape.length - 1`.
 * @throws {RangeError} If the axis or index is out of bounds.
 *
 * @example Head 1 of [tokens, heads, headDim]
 * ```ts
 * import { selectAxis, tensor } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const k = tensor(Float32Array.from({ length: 12 }, (_, i) => i), [3, 2, 2], { layout: "thd" });
 * const h1 = selectAxis(k, 1, 1);
 * assert.deepEqual(h1.shape, [3, 2]);
 * assert.equal(h1.layout, "td");
 * assert.equal(h1.data[h1.offset + 1 * h1.strides[0]], 6);
 * ```
 */
export function selectAxis<D extends DType>(t: Tensor<D>, axis: number, index: number): Tensor<D> {
  checkAxis("select from tensor", t, axis);
  const n = t.shape[axis]!;
  if (!Number.isInteger(index) || index < 0 || index >= n) {
    throw new RangeError(
      `Cannot select from tensor: index must be an integer in [0, ${n}) on axis ${axis}, got ${
        describeValue(index)
      }`,
    );
  }
  const shape = t.shape.filter((_, i) => i !== axis);
  const strides = t.strides.filter((_, i) => i !== axis);
  const base = {
    dtype: t.dtype,
    shape,
    strides,
    offset: t.offset + index * t.strides[axis]!,
    data: t.data,
  };
  const layout = (t.layout === "thd" && axis === 1) || (t.layout === "htd" && axis === 0)
    ? { layout: "td" as const }
    : {};
  return { ...base, ...layout };
}

/**
 * Reorders axes (no copy), e.g. `"thd"` → `"htd"` with `[1, 0, 2]`.
 *
 * @param t A tensor.
 * @param order A permutation of `0..rank-1`.
 * @param layout The layout name of the result, if any.
 * @returns A view with permuted shape and strides.
 * @throws {RangeError} If `order` is not a permutation.
 *
 * @example
 * ```ts
 * import { permute, zeros } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const t = permute(zeros("f32", [5, 2, 3], { layout: "thd" }), [1, 0, 2], "htd");
 * assert.deepEqual(t.shape, [2, 5, 3]);
 * assert.deepEqual(t.strides, [3, 6, 1]);
 * ```
 */
export function permute<D extends DType>(
  t: Tensor<D>,
  order: readonly number[],
  layout?: Layout,
): Tensor<D> {
  const r = t.shape.length;
  const seen = new Set(order);
  if (order.length !== r || seen.size !== r || order.some((a) => !(a >= 0 && a < r))) {
    throw new RangeError(
      `Cannot permute tensor: order must be a permutation of 0..${r - 1}, got ${
        describeValue(order)
      }`,
    );
  }
  validateLayout("permute tensor", layout, r);
  return {
    dtype: t.dtype,
    shape: order.map((a) => t.shape[a]!),
    strides: order.map((a) => t.strides[a]!),
    offset: t.offset,
    data: t.data,
    ...(layout !== undefined ? { layout } : {}),
  };
}

/**
 * Reads one element.
 *
 * @param t A tensor.
 * @param index One index per axis.
 * @returns The element as a number.
 * @throws {RangeError} If the index is out of bounds or has the wrong rank.
 *
 * @example
 * ```ts
 * import { at, tensor } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * assert.equal(at(tensor(new Float32Array([1, 2, 3, 4]), [2, 2]), 1, 0), 3);
 * ```
 */
export function at(t: Tensor, ...index: number[]): number {
  if (index.length !== t.shape.length) {
    throw new RangeError(
      `Cannot read tensor element: index must have ${t.shape.length} entries, got ${index.length}`,
    );
  }
  let o = t.offset;
  for (let i = 0; i < index.length; i++) {
    const v = index[i]!;
    if (!Number.isInteger(v) || v < 0 || v >= t.shape[i]!) {
      throw new RangeError(
        `Cannot read tensor element: index[${i}] must be in [0, ${t.shape[i]}), got ${
          describeValue(v)
        }`,
      );
    }
    o += v * t.strides[i]!;
  }
  return t.data[o]!;
}

/**
 * Copies a tensor into a new contiguous tensor, optionally converting dtype.
 * Returns `t` itself when it is already contiguous, has the requested dtype and
 * starts at offset 0 of an array of exactly its size.
 *
 * @param t A tensor (any strides).
 * @param dtype Target dtype. @default {t.dtype}
 * @returns A row-major tensor with offset 0.
 *
 * @example Materialising a head view
 * ```ts
 * import { contiguous, selectAxis, tensor } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const k = tensor(Float32Array.from({ length: 8 }, (_, i) => i), [2, 2, 2], { layout: "thd" });
 * const h1 = contiguous(selectAxis(k, 1, 1));
 * assert.deepEqual([...h1.data], [2, 3, 6, 7]);
 * ```
 */
export function contiguous<D extends DType, E extends DType = D>(
  t: Tensor<D>,
  dtype?: E,
): Tensor<E> {
  const target = (dtype ?? t.dtype) as E;
  const n = numel(t.shape);
  if (
    target === (t.dtype as DType) && t.offset === 0 && t.data.length === n && isContiguous(t)
  ) {
    return t as unknown as Tensor<E>;
  }
  const out = zeros(target, t.shape, t.layout !== undefined ? { layout: t.layout } : {});
  copyInto(out, t);
  return out;
}

/**
 * Copies `src` element-wise into `dst` (same shape; dtypes may differ, values
 * are converted by typed-array assignment: f32→f16 rounds to nearest, floats to
 * integers truncate).
 *
 * @param dst Destination tensor (written).
 * @param src Source tensor.
 * @throws {TypeError} If the shapes differ.
 *
 * @example
 * ```ts
 * import { copyInto, tensor, zeros } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const dst = zeros("f16", [2]);
 * copyInto(dst, tensor(new Float32Array([0.5, 1.25]), [2]));
 * assert.deepEqual([...dst.data], [0.5, 1.25]);
 * ```
 */
export function copyInto(dst: Tensor, src: Tensor): void {
  if (
    dst.shape.length !== src.shape.length || dst.shape.some((d, i) => d !== src.shape[i])
  ) {
    throw new TypeError(
      `Cannot copy tensor: destination shape ${describeValue(dst.shape)} must equal source shape ${
        describeValue(src.shape)
      }`,
    );
  }
  const r = src.shape.length;
  if (r === 0) {
    dst.data[dst.offset] = src.data[src.offset]!;
    return;
  }
  const n = numel(src.shape);
  if (n === 0) return;
  // Iterate over all but the last axis with an odometer; copy the last axis in a loop.
  const idx = new Array<number>(r - 1).fill(0);
  const last = src.shape[r - 1]!;
  const ss = src.strides[r - 1]!;
  const ds = dst.strides[r - 1]!;
  const sd = src.data;
  const dd = dst.data;
  for (let row = 0, rows = n / last; row < rows; row++) {
    let so = src.offset;
    let doff = dst.offset;
    for (let a = 0; a < r - 1; a++) {
      so += idx[a]! * src.strides[a]!;
      doff += idx[a]! * dst.strides[a]!;
    }
    for (let j = 0; j < last; j++) dd[doff + j * ds] = sd[so + j * ss]!;
    for (let a = r - 2; a >= 0; a--) {
      if (++idx[a]! < src.shape[a]!) break;
      idx[a] = 0;
    }
  }
}
