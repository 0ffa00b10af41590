// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * KV caches: the paged, ragged {@linkcode KvStore} that every attention stage
 * reads, and the cache policies that decide what it keeps.
 *
 * @example A StreamingLLM cache (4 sinks + a window of 8) read back as spans
 * ```ts
 * import { KvStore } from "@longctx/longctx/kv";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const sinks = 4, window = 8;
 * const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 16, pageSize: 5 });
 * store.append(0, randn([12, 2, 16], { seed: 1 }), randn([12, 2, 16], { seed: 2 })); // prefill
 * for (let step = 0; step < 20; step++) {                                          // decode
 *   store.append(0, randn([1, 2, 16], { seed: 3 + step }), randn([1, 2, 16], { seed: 50 + step }));
 *   for (let h = 0; h < 2; h++) store.evict(0, h, sinks, sinks + 1);
 * }
 * const n = store.length(0, 0);
 * const { keys, positions } = store.gatherSpans(0, 0, [[0, sinks], [n - window, n]]);
 * assert.deepEqual(keys.shape, [12, 16]);
 * assert.deepEqual([...positions], [0, 1, 2, 3, 24, 25, 26, 27, 28, 29, 30, 31]);
 * ```
 *
 * @module
 */

export * from "./kv_store.ts";
export * from "./types.ts";
export * from "./keep_all.ts";
export * from "./sink_window.ts";
