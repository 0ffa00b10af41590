// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Positional encodings: rotary position embedding ({@linkcode Rope}) in the
 * Hugging Face (`"halves"`) and Meta (`"adjacent"`) layouts, with the
 * context-extension scalings of transformers' `modeling_rope_utils.py`:
 * Position Interpolation, NTK-aware, dynamic NTK, YaRN and a base change (ABF).
 *
 * | scaling | frequencies | paper |
 * | --- | --- | --- |
 * | `"linear"` | {@linkcode linearInvFreq} | https://arxiv.org/abs/2306.15595 |
 * | `"ntk"` | {@linkcode ntkInvFreq} | https://arxiv.org/abs/2309.00071 |
 * | `"dynamic-ntk"` | {@linkcode dynamicNtkInvFreq} | https://arxiv.org/abs/2309.00071 |
 * | `"yarn"` | {@linkcode yarnInvFreq}, {@linkcode yarnAttentionFactor} | https://arxiv.org/abs/2309.00071 |
 * | `"base"` | {@linkcode ropeInvFreq} with the new base | https://arxiv.org/abs/2309.16039 |
 *
 * @example Position Interpolation is plain RoPE at a compressed position
 * ```ts
 * import { Rope } from "@longctx/longctx/positional";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const plain = new Rope({ headDim: 64 });
 * const pi = new Rope({ headDim: 64, scaling: { type: "linear", factor: 4 } });
 * const k = randn([1, 2, 64], { seed: 7, layout: "thd" }); // [tokens, heads, headDim]
 * const a = pi.apply(k, [4097]);
 * const b = plain.apply(k, [4097 / 4]);
 * assert.ok(a.data.every((v, i) => Math.abs(v - b.data[i]) < 1e-5));
 * ```
 *
 * @module
 */

export * from "./rope.ts";
export * from "./scaling.ts";
