// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Exact attention kernels and the mergeable softmax state.
 *
 * Every kernel returns `{ out, lse }` ({@linkcode AttentionState}), so partial
 * results over disjoint key sets merge exactly with {@linkcode mergeStates}.
 *
 * @example Split-K decode: attend two halves of the cache, merge, equals dense
 * ```ts
 * import { denseAttention, mergeStates } from "@longctx/longctx/attention";
 * import { randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const query = randn([1, 8, 16], { seed: 1 });            // [1, heads, headDim]
 * const key = randn([100, 2, 16], { seed: 2 });            // [tokens, kvHeads, headDim]
 * const value = randn([100, 2, 16], { seed: 3 });
 * const half = (a: number, b: number) =>
 *   denseAttention({ query, key: sliceAxis(key, 0, a, b), value: sliceAxis(value, 0, a, b) }, { causal: false });
 * const merged = mergeStates([half(0, 37), half(37, 100)]);
 * const exact = denseAttention({ query, key, value });
 * merged.out.data.forEach((x, i) => assert.ok(Math.abs(x - exact.out.data[i]) < 1e-5));
 * ```
 *
 * @module
 */

export * from "./types.ts";
export { denseAttention, denseAttentionInto, type DenseAttentionOptions } from "./dense.ts";
export * from "./merge_states.ts";
export * from "./selection.ts";
export * from "./sparse_attend.ts";
export * from "./stages.ts";
export * from "./pipeline.ts";
export * from "./streaming_llm.ts";
export * from "./lm_infinite.ts";
export * from "./union.ts";
export * from "./long_heads.ts";
export * from "./parallel.ts";
export * from "./duo_attention.ts";
export * from "./landmark.ts";
export * from "./landmark_tokens.ts";
export * from "./kmeans.ts";
export * from "./squeezed.ts";
export * from "./wasm_heap.ts";
export * from "./dense_wasm.ts";
