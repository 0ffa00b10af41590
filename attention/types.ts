// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Shared types of the attention kernels.
 *
 * @module
 */

import type { FloatDType, Tensor } from "../tensor/types.ts";

/**
 * The mergeable result of softmax attention over some set of keys
 * (FlashInfer's "attention state").
 *
 * - `out`: `[queryTokens, heads, headDim]` (`"thd"`), the softmax-weighted mean of values.
 * - `lse`: `[queryTokens, heads]`, natural-log sum of exp of the (scaled, capped)
 *   logits over the keys read.
 *
 * A row that read no key (fully masked) has `out = 0` and `lse = -Infinity`:
 * it carries no mass, so {@linkcode mergeStates} gives it weight 0 and the merge
 * of it with any other state returns that other state exactly. No NaN is produced.
 */
export interface AttentionState {
  /** Output, shape `[queryTokens, heads, headDim]`, contiguous f32. */
  out: Tensor<"f32">;
  /** Log-sum-exp of the logits, shape `[queryTokens, heads]`, contiguous f32. */
  lse: Tensor<"f32">;
}

/** Query, key and value tensors of one attention call. */
export interface AttentionInput {
  /** Queries, shape `[queryTokens, heads, headDim]`, f32 or f16, last stride 1. */
  query: Tensor<FloatDType>;
  /** Keys, shape `[keyTokens, kvHeads, headDim]`, f32 or f16, last stride 1. `heads % kvHeads == 0`. */
  key: Tensor<FloatDType>;
  /** Values, shape `[keyTokens, kvHeads, headDim]`, f32 or f16, last stride 1. */
  value: Tensor<FloatDType>;
}
