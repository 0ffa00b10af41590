// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Capture of real attention inputs from a model run, for an evaluation
 * harness: per layer, the queries, keys and values the pipeline received
 * (pre-RoPE) and the rotated queries and keys (post-RoPE), the pipeline's
 * output and log-sum-exp, and statistics of exact causal softmax attention
 * over the captured keys.
 *
 * ## Arrays (names as written by `model/cli.ts capture`, one `.npy` each)
 *
 * | name | dtype | shape | content |
 * | --- | --- | --- | --- |
 * | `tokens` | i32 | `[T]` | token ids (BOS first) |
 * | `layer{l}_q` | f32 | `[T, heads, headDim]` | queries before RoPE |
 * | `layer{l}_k`, `layer{l}_v` | f32 | `[T, kvHeads, headDim]` | keys before RoPE, values |
 * | `layer{l}_q_rope`, `layer{l}_k_rope` | f32 | as above | rotated at their positions by the pipeline's RoPE (for dynamic NTK, the frequencies of the call that attended them) |
 * | `layer{l}_out` | f32 | `[T, heads, headDim]` | the pipeline's attention output |
 * | `layer{l}_lse` | f32 | `[T, heads]` | the pipeline's log-sum-exp of the scaled logits |
 * | `layer{l}_entropy` | f32 | `[T, heads]` | entropy (nats) of exact causal softmax attention |
 * | `layer{l}_sink_mass` | f32 | `[T, heads]` | its probability on token 0 |
 * | `layer{l}_mean_distance` | f32 | `[T, heads]` | its expected query−key distance, `Σ_j p_j (i − j)` |
 *
 * The statistics describe **exact dense** attention of the captured rotated
 * queries and keys (scale `1/√headDim` times the RoPE attention factor²), in
 * float64, whatever pipeline ran; `out`/`lse` are what the pipeline computed.
 *
 * @module
 */

import { requirePositiveInt } from "../tensor/validate.ts";
import type { Llama } from "./llama.ts";
import type { NpyArray } from "./npy.ts";

/** Options of {@linkcode captureAttention}. */
export interface CaptureOptions {
  /** Compute the exact-attention statistics (O(T²·heads·headDim) per layer). @default {true} */
  statistics?: boolean;
}

/** Summary statistics of one head over all captured tokens. */
export interface HeadSummary {
  /** Layer. */
  layer: number;
  /** Query head. */
  head: number;
  /** Mean entropy (nats) of exact attention. */
  entropy: number;
  /** Mean probability on token 0. */
  sinkMass: number;
  /** Mean expected distance. */
  meanDistance: number;
}

/** Result of {@linkcode captureAttention}. */
export interface CaptureResult {
  /** Named arrays (see the module doc). */
  arrays: Map<string, NpyArray>;
  /** Per-head means of the statistics (empty without `statistics`). */
  heads: HeadSummary[];
}

/**
 * Runs `tokens` through `model` from an empty cache and captures every
 * layer's attention inputs and outputs (see the module doc).
 *
 * @param model The model (reset first).
 * @param tokens Token ids.
 * @param options Whether to compute statistics.
 * @returns Arrays and per-head summaries.
 * @throws {RangeError} If `tokens` is empty or holds an id out of range.
 *
 * @example Captured post-RoPE keys are the raw keys rotated at their positions
 * ```ts
 * import { captureAttention, Llama, randomCheckpoint } from "@longctx/longctx/model";
 * import { Rope } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * const ckpt = randomCheckpoint({ dim: 8, hiddenDim: 16, layers: 2, heads: 2, kvHeads: 1, vocabSize: 11, seqLen: 16 });
 * const { arrays, heads } = captureAttention(new Llama(ckpt), [1, 4, 2, 8, 3]);
 * const k = arrays.get("layer1_k")!, kr = arrays.get("layer1_k_rope")!;
 * assert.deepEqual(k.shape, [5, 1, 4]);
 * const row = new Float32Array(4);
 * new Rope({ headDim: 4, layout: "adjacent" }).rotateRow(k.data as Float32Array, 3 * 4, row, 0, 3);
 * assert.deepEqual(row, kr.data.subarray(12, 16));
 * assert.equal(heads.length, 2 * 2);
 * assert.ok(heads.every((h) => h.sinkMass > 0 && h.sinkMass <= 1));
 * ```
 */
export function captureAttention(
  model: Llama,
  tokens: ArrayLike<number>,
  options: CaptureOptions = {},
): CaptureResult {
  const T = requirePositiveInt("capture attention", "tokens.length", tokens.length);
  const c = model.config, d = c.headDim, H = c.heads, KV = c.kvHeads;
  const arrays = new Map<string, NpyArray>();
  arrays.set("tokens", { descr: "<i4", shape: [T], data: Int32Array.from(tokens) });
  const f32 = (shape: number[]): Float32Array => new Float32Array(shape.reduce((a, b) => a * b));
  const per = Array.from({ length: c.layers }, () => ({
    q: f32([T, H, d]),
    k: f32([T, KV, d]),
    v: f32([T, KV, d]),
    qr: f32([T, H, d]),
    kr: f32([T, KV, d]),
    out: f32([T, H, d]),
    lse: f32([T, H]),
    factor: 1,
  }));
  model.reset();
  model.forward(tokens, {
    onAttention: (e) => {
      const rows = e.query.shape[0]!;
      const p = per[e.layer]!;
      const at = e.start;
      p.q.set(e.query.data.subarray(0, rows * H * d), at * H * d);
      p.k.set(e.key.data.subarray(0, rows * KV * d), at * KV * d);
      p.v.set(e.value.data.subarray(0, rows * KV * d), at * KV * d);
      p.out.set(e.state.out.data.subarray(0, rows * H * d), at * H * d);
      p.lse.set(e.state.lse.data.subarray(0, rows * H), at * H);
      // The rope in force for this call, as AttentionPipeline.attend chooses it.
      const rope = model.pipeline.rope!.forSequenceLength(e.position + rows);
      p.factor = rope.attentionFactor;
      for (let r = 0; r < rows; r++) {
        const pos = e.position + r;
        for (let h = 0; h < H; h++) {
          const o = ((at + r) * H + h) * d;
          rope.rotateRow(p.q, o, p.qr, o, pos);
        }
        for (let h = 0; h < KV; h++) {
          const o = ((at + r) * KV + h) * d;
          rope.rotateRow(p.k, o, p.kr, o, pos);
        }
      }
    },
  });
  const heads: HeadSummary[] = [];
  for (let l = 0; l < c.layers; l++) {
    const p = per[l]!;
    const name = `layer${l}_`;
    arrays.set(name + "q", { descr: "<f4", shape: [T, H, d], data: p.q });
    arrays.set(name + "k", { descr: "<f4", shape: [T, KV, d], data: p.k });
    arrays.set(name + "v", { descr: "<f4", shape: [T, KV, d], data: p.v });
    arrays.set(name + "q_rope", { descr: "<f4", shape: [T, H, d], data: p.qr });
    arrays.set(name + "k_rope", { descr: "<f4", shape: [T, KV, d], data: p.kr });
    arrays.set(name + "out", { descr: "<f4", shape: [T, H, d], data: p.out });
    arrays.set(name + "lse", { descr: "<f4", shape: [T, H], data: p.lse });
    if (options.statistics ?? true) {
      const stats = attentionStatistics(p.qr, p.kr, T, H, KV, d, p.factor ** 2 / Math.sqrt(d));
      arrays.set(name + "entropy", { descr: "<f4", shape: [T, H], data: stats.entropy });
      arrays.set(name + "sink_mass", { descr: "<f4", shape: [T, H], data: stats.sink });
      arrays.set(name + "mean_distance", { descr: "<f4", shape: [T, H], data: stats.distance });
      for (let h = 0; h < H; h++) {
        let e = 0, s = 0, m = 0;
        for (let i = 0; i < T; i++) {
          e += stats.entropy[i * H + h]!;
          s += stats.sink[i * H + h]!;
          m += stats.distance[i * H + h]!;
        }
        heads.push({ layer: l, head: h, entropy: e / T, sinkMass: s / T, meanDistance: m / T });
      }
    }
  }
  return { arrays, heads };
}

/** Exact causal softmax statistics per (token, head), in float64. */
function attentionStatistics(
  q: Float32Array,
  k: Float32Array,
  T: number,
  H: number,
  KV: number,
  d: number,
  scale: number,
): { entropy: Float32Array; sink: Float32Array; distance: Float32Array } {
  const entropy = new Float32Array(T * H), sink = new Float32Array(T * H);
  const distance = new Float32Array(T * H);
  const s = new Float64Array(T);
  const g = H / KV;
  for (let i = 0; i < T; i++) {
    for (let h = 0; h < H; h++) {
      const qo = (i * H + h) * d, kh = Math.floor(h / g);
      let max = -Infinity;
      for (let j = 0; j <= i; j++) {
        const ko = (j * KV + kh) * d;
        let dot = 0;
        for (let c = 0; c < d; c++) dot += q[qo + c]! * k[ko + c]!;
        s[j] = dot * scale;
        if (s[j]! > max) max = s[j]!;
      }
      let z = 0;
      for (let j = 0; j <= i; j++) z += Math.exp(s[j]! - max);
      let ent = 0, dist = 0;
      for (let j = 0; j <= i; j++) {
        const pj = Math.exp(s[j]! - max) / z;
        if (pj > 0) ent -= pj * Math.log(pj);
        dist += pj * (i - j);
      }
      entropy[i * H + h] = ent;
      sink[i * H + h] = Math.exp(s[0]! - max) / z;
      distance[i * H + h] = dist;
    }
  }
  return { entropy, sink, distance };
}
