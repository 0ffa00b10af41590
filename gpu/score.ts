// Copyright 2026 the longctx authors. MIT license.

/**
 * Scoring GEMV on WebGPU: each query head against many summary keys of its
 * KV head — chunk keys (LongHeads), landmark keys (Landmark Attention),
 * centroids (Squeezed Attention) — or against per-page key bounds (Quest).
 *
 * @module
 */

import { describeValue, requireFinite } from "../tensor/validate.ts";
import type { GpuContext } from "./device.ts";
import { createGpuTensor, type GpuTensor } from "./tensor.ts";
import { requireBindable, requireGpuThd, storageOf } from "./_kernel.ts";
import { SCORE_PARAMS, scoreWgsl } from "./_wgsl/score.ts";

/** Threads per workgroup (keys per workgroup) of the score kernel. */
const SCORE_WORKGROUP = 64;
/** Query rows per workgroup of the score kernel, at most. */
const MAX_SCORE_ROWS = 16;
/** Workgroup-memory budget of the query tile. */
const WORKGROUP_BUDGET = 16384;

/** Input of {@linkcode scoreKeysWebGpu}. */
export interface ScoreKeysInput {
  /** Queries, contiguous `[queryTokens, heads, headDim]`, f32 or f16. */
  query: GpuTensor;
  /** Summary keys (or lower bounds with `keysMax`), contiguous `[n, kvHeads, headDim]`, f32 or f16. */
  keys: GpuTensor;
  /** Upper bounds per page (Quest): score `Σ_i max(q_i·keys_i, q_i·keysMax_i)`. Same shape and dtype as `keys`. */
  keysMax?: GpuTensor;
}

/** Options of {@linkcode scoreKeysWebGpu}. */
export interface ScoreKeysOptions {
  /** Multiplies every score. @default {1} */
  scale?: number;
}

/**
 * Scores every query head against every summary key of its KV head:
 * `scores[t, h, j] = scale · q[t, h] · keys[j, ⌊h / group⌋]`, or with
 * `keysMax` Quest's upper bound `scale · Σ_i max(q_i · keys_i, q_i · keysMax_i)`.
 *
 * One workgroup scores 64 keys of one KV head against up to 16 query rows
 * (query tokens × group heads) held in workgroup memory, so each key row is
 * read once for the whole GQA group. Pair it with {@linkcode topKWebGpu} to
 * pick chunks, blocks, clusters or pages.
 *
 * | cost | |
 * | --- | --- |
 * | time | O(queryTokens · heads · n · headDim) |
 * | reads | the keys once per (KV head, block of 16 query rows) |
 * | allocation | the result |
 *
 * @param gpu The context.
 * @param input Queries, keys and optional upper bounds.
 * @param options Score scale.
 * @returns Scores, f32 GPU tensor `[queryTokens, heads, n]` (pooled).
 * @throws {TypeError} On shape or dtype mismatches.
 * @throws {RangeError} If heads is not a multiple of kvHeads, or `scale` is not finite.
 * @throws {GpuDeviceLostError} If the device is lost.
 *
 * @example Score 100 chunk keys for 8 heads over 2 KV heads (skipped without a GPU)
 * ```ts
 * import { download, scoreKeysWebGpu, tryRequestGpu, upload } from "@longctx/longctx/gpu";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const q = randn([1, 8, 32], { seed: 1 }), k = randn([100, 2, 32], { seed: 2 });
 *   const scores = await download(gpu, scoreKeysWebGpu(gpu, { query: upload(gpu, q), keys: upload(gpu, k) }));
 *   assert.deepEqual(scores.shape, [1, 8, 100]);
 *   for (let h = 0; h < 8; h++) {
 *     for (let j = 0; j < 100; j++) { // head h reads KV head ⌊h / 4⌋
 *       let dot = 0;
 *       for (let e = 0; e < 32; e++) dot += q.data[h * 32 + e] * k.data[(j * 2 + (h >> 2)) * 32 + e];
 *       assert.ok(Math.abs(scores.data[h * 100 + j] - dot) < 1e-4);
 *     }
 *   }
 *   gpu.destroy();
 * }
 * ```
 */
export function scoreKeysWebGpu(
  gpu: GpuContext,
  input: ScoreKeysInput,
  options: ScoreKeysOptions = {},
): GpuTensor<"f32"> {
  const action = "score keys on GPU";
  if (input === null || typeof input !== "object") {
    throw new TypeError(`Cannot ${action}: input must be an object, got ${describeValue(input)}`);
  }
  const { query, keys, keysMax } = input;
  requireGpuThd(action, "query", query);
  requireGpuThd(action, "keys", keys);
  if (keysMax !== undefined) {
    requireGpuThd(action, "keysMax", keysMax);
    if (keysMax.dtype !== keys.dtype || keysMax.shape.some((x, i) => x !== keys.shape[i])) {
      throw new TypeError(
        `Cannot ${action}: keysMax (${keysMax.dtype} ${
          describeValue(keysMax.shape)
        }) must match keys (${keys.dtype} ${describeValue(keys.shape)})`,
      );
    }
    requireBindable(gpu, action, "keysMax", keysMax.buffer);
  }
  requireBindable(gpu, action, "query", query.buffer);
  requireBindable(gpu, action, "keys", keys.buffer);
  const [tq, heads, d] = query.shape as [number, number, number];
  const [n, kvHeads, dk] = keys.shape as [number, number, number];
  if (dk !== d) {
    throw new TypeError(
      `Cannot ${action}: query headDim (${d}) does not match keys headDim (${dk})`,
    );
  }
  if (kvHeads === 0 || heads % kvHeads !== 0) {
    throw new RangeError(
      `Cannot ${action}: query heads (${heads}) must be a multiple of kvHeads, got kvHeads ${kvHeads}`,
    );
  }
  const scale = requireFinite(action, "scale", options.scale ?? 1);
  gpu.checkAlive(action);
  const group = heads / kvHeads;
  let rows = Math.min(tq * group, MAX_SCORE_ROWS);
  while (rows > 1 && rows * d * 4 > WORKGROUP_BUDGET) rows--;
  rows = Math.max(rows, 1);
  const result = createGpuTensor(gpu, "f32", [tq, heads, n]);
  if (tq * heads * n === 0) return result;
  const mode = keysMax === undefined ? "dot" : "bound";
  const pipeline = gpu.pipeline("score-keys", {
    headDim: d,
    rows,
    workgroupSize: SCORE_WORKGROUP,
    query: storageOf(gpu, query.dtype),
    keys: storageOf(gpu, keys.dtype),
    mode,
  }, scoreWgsl);
  const u = gpu.uniform(SCORE_PARAMS.pack({
    n,
    kvHeads,
    group,
    tq,
    heads,
    qBase: query.offset,
    keyBase: keys.offset,
    hiBase: keysMax?.offset ?? 0,
    scale,
    pad0: 0,
    pad1: 0,
    pad2: 0,
  }));
  const bindings = [u, query.buffer, keys.buffer, result.buffer];
  if (keysMax !== undefined) bindings.push(keysMax.buffer);
  gpu.submit("score-keys", [{
    kind: "dispatch",
    pipeline,
    bindings,
    workgroups: [Math.ceil(n / SCORE_WORKGROUP), kvHeads, Math.ceil(tq * group / rows)],
  }], { release: [u] });
  return result;
}
