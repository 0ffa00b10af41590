// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * The one tensor interface every stage and backend speaks.
 *
 * @module
 */

/**
 * Element types. `f16` is stored in a `Float16Array`; `i8`/`u8` hold quantized
 * data; `i32` holds indices and positions.
 */
export type DType = "f32" | "f16" | "i8" | "u8" | "i32";

/** Maps each {@linkcode DType} to the typed array that stores it on the CPU. */
export interface DTypeArrayMap {
  /** 32-bit float. */
  f32: Float32Array;
  /** 16-bit float (IEEE binary16), native `Float16Array`. */
  f16: Float16Array;
  /** Signed 8-bit integer (quantized data). */
  i8: Int8Array;
  /** Unsigned 8-bit integer (quantized data). */
  u8: Uint8Array;
  /** Signed 32-bit integer (indices, positions). */
  i32: Int32Array;
}

/** Floating-point dtypes that attention kernels read. */
export type FloatDType = "f32" | "f16";

/** A typed array that stores floats the kernels read: f32 or f16. */
export type FloatArray = Float32Array | Float16Array;

/**
 * Named layouts, in the style of FlashInfer's `NHD`/`HND`:
 *
 * | name | shape |
 * | --- | --- |
 * | `"thd"` | `[tokens, heads, headDim]` (the default for Q/K/V) |
 * | `"htd"` | `[heads, tokens, headDim]` |
 * | `"td"` | `[tokens, headDim]` (one head) |
 */
export type Layout = "thd" | "htd" | "td";

/**
 * A strided view over a typed array: element `[i0, i1, …]` lives at
 * `data[offset + i0 * strides[0] + i1 * strides[1] + …]`.
 *
 * Slicing a head or a token range returns a new view in O(rank) without copying
 * (see {@linkcode sliceAxis} and {@linkcode selectAxis}).
 */
export interface Tensor<D extends DType = DType> {
  /** Element type. */
  readonly dtype: D;
  /** Extent of each axis. */
  readonly shape: readonly number[];
  /** Element step of each axis. Row-major contiguous when created by this library. */
  readonly strides: readonly number[];
  /** Index in `data` of element `[0, 0, …]`. */
  readonly offset: number;
  /** Backing storage, shared between views. */
  readonly data: DTypeArrayMap[D];
  /** Optional named layout the axes follow. */
  readonly layout?: Layout;
}
