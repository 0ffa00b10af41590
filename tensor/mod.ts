// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * The one tensor interface every longctx stage speaks: a strided view
 * `{ dtype, shape, strides, offset, data, layout? }` over a typed array
 * (`Float32Array`, `Float16Array`, `Int8Array`, `Uint8Array`, `Int32Array`),
 * views without copies, a seeded PRNG, and the validation helpers that give
 * every error message the same voice.
 *
 * @example A head view of seeded keys
 * ```ts
 * import { randn, selectAxis, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const keys = randn([16, 4, 8], { seed: 7, layout: "thd" }); // [tokens, kvHeads, headDim]
 * const head2 = selectAxis(keys, 1, 2);                         // [tokens, headDim], no copy
 * const recent = sliceAxis(head2, 0, 12, 16);                   // last 4 tokens, no copy
 * assert.deepEqual(recent.shape, [4, 8]);
 * assert.equal(recent.data, keys.data);
 * ```
 *
 * @module
 */

export * from "./types.ts";
export * from "./tensor.ts";
export * from "./random.ts";
export * from "./validate.ts";
