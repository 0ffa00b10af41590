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
 * @example Score 512 chunk keys for 32 heads over 8 KV heads (`ts ignore`: needs a GPU)
 * ```ts ignore
 * import { download, requestGpu, scoreKeysWebGpu, upload } from "@longctx/longctx/gpu";
 * import { randn } from "@longctx/longctx/tensor";
 * const gpu = await requestGpu();
 * const query = upload(gpu, randn([1, 32, 128], { seed: 1 }));
 * const keys = upload(gpu, randn([512, 8, 128], { seed: 2 }));
 * const scores = await download(gpu, scoreKeysWebGpu(gpu, { query, keys })); // [1, 32, 512]
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
