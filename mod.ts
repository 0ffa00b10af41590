// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * longctx: long-context attention and KV-cache algorithms that compose, as
 * pipeline stages over one tensor interface. Every stage answers one question
 * — at which positions (positional), which tokens (selector), which selector
 * for which head (router), what is kept (cache policy) — and the one sparse
 * attend kernel computes an exact softmax over exactly what was selected.
 *
 * Sub-modules: `./tensor`, `./attention`, `./kv`, `./positional`, `./model` (a llama2.c-format
 * Llama whose attention is a pipeline).
 *
 * @example StreamingLLM sinks ∪ a retrieved span, with YaRN-scaled RoPE: one softmax over the union
 * ```ts
 * import {
 *   AttentionPipeline, Rope, SinkWindow, StreamingLlm, UnionSelector, DenseSelector, randn,
 * } from "@longctx/longctx";
 * import assert from "node:assert/strict";
 * const rope = new Rope({ headDim: 16, scaling: { type: "yarn", factor: 4, originalMaxPosition: 64 } });
 * const pipe = new AttentionPipeline({
 *   layers: 1, heads: 4, kvHeads: 2, headDim: 16, rope,
 *   selector: new UnionSelector([new StreamingLlm({ sinks: 4, window: 32, reindex: false }), new DenseSelector()]),
 * });
 * const T = 200;
 * const { out } = pipe.attend(0, randn([T, 4, 16], { seed: 1 }), randn([T, 2, 16], { seed: 2 }), randn([T, 2, 16], { seed: 3 }));
 * assert.deepEqual(out.shape, [T, 4, 16]);
 * assert.ok(out.data.every(Number.isFinite));
 * assert.ok(new SinkWindow({ window: 32 }).keeps.kind === "sink-window");
 * ```
 *
 * @module
 */

export * from "./tensor/mod.ts";
export * from "./attention/mod.ts";
export * from "./kv/mod.ts";
export * from "./positional/mod.ts";
export * from "./model/mod.ts";
