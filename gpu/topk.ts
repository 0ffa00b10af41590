// Copyright 2026 the longctx authors. MIT license.

/**
 * Row-wise top-k on WebGPU: the `k` largest scores of each row and their
 * indices, for selectors that rank chunks, landmarks, centroids or pages
 * (LongHeads, Landmark, Squeezed Attention, Quest).
 *
 * @module
 */

import { numel } from "../tensor/tensor.ts";
import { describeValue, requireOneOf, requirePositiveInt } from "../tensor/validate.ts";
import type { GpuContext } from "./device.ts";
import { createGpuTensor, type GpuTensor, requireContiguous } from "./tensor.ts";
import { requireBindable } from "./_kernel.ts";
import { grid2d } from "./_wgsl/common.ts";
import { TOPK_PARAMS, topKWgsl } from "./_wgsl/topk.ts";

/** Largest `k` {@linkcode topKWebGpu} accepts (the sort runs in workgroup memory). */
export const MAX_TOP_K = 1024;

/** Threads per workgroup of the top-k kernel (one histogram bin each). */
const TOPK_WORKGROUP = 256;

/** Options of {@linkcode topKWebGpu}. */
export interface TopKOptions {
  /**
   * Order of each row's result: `"score"` (largest first, ties by lower
   * index) or `"index"` (ascending index, the order selectors read spans in).
   * @default {"score"}
   */
  order?: "score" | "index";
}

/** Result of {@linkcode topKWebGpu}. */
export interface TopKResult {
  /** Indices into the last axis, shape `[...rows, k]`, i32. */
  indices: GpuTensor<"i32">;
  /** The scores at those indices (bit-exact copies), shape `[...rows, k]`, f32. */
  values: GpuTensor<"f32">;
}

/**
 * The `k` largest entries of each row of `scores` (the last axis is the row).
 *
 * Ranking is IEEE-754's total order on the f32 bits — `−∞ < … < −0 < +0 < … < +∞`
 * — with NaN below everything, and ties go to the lower index, so the result
 * is deterministic and equals a stable sort by descending score. One
 * workgroup per row: a radix select of the k-th largest value (four 8-bit
 * histogram passes), a gather that keeps ties in index order, and a bitonic
 * sort of the winners in workgroup memory.
 *
 * | cost per row of n scores | |
 * | --- | --- |
 * | reads | 6 passes over the row (4 radix, count, gather) |
 * | workgroup memory | `8 · nextPow2(k)` bytes + 3 KiB |
 * | allocation | the two result tensors |
 *
 * @param gpu The context.
 * @param scores f32 GPU tensor, contiguous, rank ≥ 1; rows are all axes but the last.
 * @param k Entries kept per row, `1 <= k <= min(n, 1024)`.
 * @param options Output order.
 * @returns `{ indices, values }`, each of shape `[...scores.shape.slice(0, -1), k]`.
 * @throws {TypeError} If `scores` is not a contiguous f32 tensor of rank ≥ 1, or `order` is unknown.
 * @throws {RangeError} If `k` is out of range.
 * @throws {GpuDeviceLostError} If the device is lost.
 *
 * @example LongHeads: the 13 best chunks of each head, in chunk order (skipped without a GPU)
 * ```ts
 * import { download, scoreKeysWebGpu, topKWebGpu, tryRequestGpu, upload } from "@longctx/longctx/gpu";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const query = upload(gpu, randn([1, 4, 16], { seed: 1 }));
 *   const chunkKeys = upload(gpu, randn([60, 2, 16], { seed: 2 }));
 *   const scores = scoreKeysWebGpu(gpu, { query, keys: chunkKeys }); // [1, heads, chunks]
 *   const { indices } = topKWebGpu(gpu, scores, 13, { order: "index" });
 *   const chosen = await download(gpu, indices); // [1, heads, 13]
 *   const s = (await download(gpu, scores)).data;
 *   for (let h = 0; h < 4; h++) { // a stable sort by descending score, then back to index order
 *     const best = [...Array(60).keys()].sort((a, b) => s[h * 60 + b] - s[h * 60 + a]).slice(0, 13);
 *     assert.deepEqual([...chosen.data.subarray(h * 13, h * 13 + 13)], best.sort((a, b) => a - b));
 *   }
 *   gpu.destroy();
 * }
 * ```
 */
export function topKWebGpu(
  gpu: GpuContext,
  scores: GpuTensor,
  k: number,
  options: TopKOptions = {},
): TopKResult {
  const action = "select top-k on GPU";
  requireContiguous(action, "scores", scores);
  if (scores.dtype !== "f32" || scores.shape.length < 1) {
    throw new TypeError(
      `Cannot ${action}: scores must be an f32 tensor of rank >= 1, got ${scores.dtype} ${
        describeValue(scores.shape)
      }`,
    );
  }
  requireBindable(gpu, action, "scores", scores.buffer);
  const n = scores.shape[scores.shape.length - 1]!;
  requirePositiveInt(action, "k", k);
  if (k > n || k > MAX_TOP_K) {
    throw new RangeError(
      `Cannot ${action}: k must be at most the row length (${n}) and ${MAX_TOP_K}, got ${k}`,
    );
  }
  const order = requireOneOf(action, "order", options.order ?? "score", ["score", "index"]);
  gpu.checkAlive(action);
  const rowShape = scores.shape.slice(0, -1);
  const rows = numel(rowShape);
  const sortSize = 2 ** Math.ceil(Math.log2(k));
  const pipeline = gpu.pipeline(
    "top-k",
    { workgroupSize: TOPK_WORKGROUP, sortSize, order },
    topKWgsl,
  );
  const result: TopKResult = {
    indices: createGpuTensor(gpu, "i32", [...rowShape, k]),
    values: createGpuTensor(gpu, "f32", [...rowShape, k]),
  };
  const u = gpu.uniform(TOPK_PARAMS.pack({
    rows,
    n,
    k,
    base: scores.offset,
    rowStride: n,
    pad0: 0,
    pad1: 0,
    pad2: 0,
  }));
  gpu.submit("top-k", [{
    kind: "dispatch",
    pipeline,
    bindings: [u, scores.buffer, result.indices.buffer, result.values.buffer],
    workgroups: grid2d(rows, gpu.limits.maxComputeWorkgroupsPerDimension),
  }], { release: [u] });
  return result;
}
