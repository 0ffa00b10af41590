// Copyright 2026 the longctx authors. MIT license.

/**
 * Dense (causal) prefill attention on WebGPU: a tiled online-softmax kernel
 * with K/V tiles in workgroup memory.
 *
 * @module
 */

import { resolveScale } from "../attention/_validate.ts";
import { describeValue, requireInt } from "../tensor/validate.ts";
import { type GpuCommand, type GpuContext, STORAGE_USAGE } from "./device.ts";
import { type GpuKvView, kvViewOfTensors } from "./kv_store.ts";
import { mergeCommands } from "./_merge.ts";
import { createGpuTensor, type GpuAttentionState, type GpuTensor } from "./tensor.ts";
import { requireBindable, requireGpuThd, storageOf } from "./_kernel.ts";
import { DENSE_PREFILL_PARAMS, densePrefillWgsl, prefillTiles } from "./_wgsl/dense_prefill.ts";

/** Threads per workgroup, and query rows per workgroup, of the prefill kernel. */
export const PREFILL_WORKGROUP = 64;

/** Input of {@linkcode densePrefillWebGpu}. */
export type DensePrefillInput =
  | {
    /** Queries, contiguous `[queryTokens, heads, headDim]`, f32 or f16. */
    query: GpuTensor;
    /** A store layer (`store.view(layer)`) or {@linkcode kvViewOfTensors}. */
    kv: GpuKvView;
  }
  | {
    /** Queries, contiguous `[queryTokens, heads, headDim]`, f32 or f16. */
    query: GpuTensor;
    /** Keys, contiguous `[keyTokens, kvHeads, headDim]`, f32 or f16. */
    key: GpuTensor;
    /** Values, same shape and dtype as `key`. */
    value: GpuTensor;
  };

/** Options of {@linkcode densePrefillWebGpu}: those of `denseAttention`. */
export interface DensePrefillOptions {
  /** Mask keys after each query (key j visible to query i iff `keyOffset + j <= queryOffset + i`). @default {true} */
  causal?: boolean;
  /** Multiplies q·k. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
  /** Logit soft-cap `c · tanh(logit / c)`. @default {undefined} (none) */
  softCap?: number;
  /** Index on the common token axis of key 0. @default {0} */
  keyOffset?: number;
  /** Index on the common token axis of query 0. @default {keyOffset + keyTokens - queryTokens} */
  queryOffset?: number;
}

/**
 * Exact softmax attention of every query over every visible key, on the GPU:
 * the same contract and options as `denseAttention` (causal by default,
 * bottom-right aligned; MHA, GQA, MQA; a row with no visible key gets
 * `out = 0`, `lse = −∞`).
 *
 * Each workgroup owns 64 query rows of one KV head — query tokens × the GQA
 * group, so every K/V tile loaded serves the whole group — and streams K/V
 * tiles through workgroup memory sized for 16 KiB (`⌊16384 / (2 · headDim ·
 * bytes)⌋` keys per tile, at most 64: 16 keys at headDim 128 in f32, 32 in
 * f16). Causal tiles past the workgroup's last row are skipped. Each row
 * keeps its query, accumulator, running max and sum in registers;
 * accumulation is f32. A cache split across buffers is one dispatch per
 * buffer and an LSE merge.
 *
 * | cost | |
 * | --- | --- |
 * | time | O(queryTokens · visible keys · headDim) per head (halved when causal) |
 * | reads | K and V once per (KV head, 64 query rows) |
 * | allocation | the result (plus pooled partials when the cache has several segments) |
 *
 * @see https://arxiv.org/abs/2205.14135
 * @param gpu The context.
 * @param input Queries `[queryTokens, heads, headDim]` and keys/values (a view or tensors).
 * @param options Causal mask, scale, soft-cap, offsets.
 * @returns `{ out: [queryTokens, heads, headDim], lse: [queryTokens, heads] }` on the GPU (pooled).
 * @throws {TypeError} On shape or dtype mismatches, or a non-boolean `causal`.
 * @throws {RangeError} If heads is not a multiple of kvHeads, or an option is out of range.
 * @throws {GpuDeviceLostError} If the device is lost.
 *
 * @example Causal prefill vs the CPU reference (skipped without a GPU)
 * ```ts
 * import { densePrefillWebGpu, downloadState, tryRequestGpu, upload } from "@longctx/longctx/gpu";
 * import { denseAttention } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const [q, k, v] = [1, 2, 3].map((seed) => randn([100, 4, 16], { seed }));
 *   const [query, key, value] = [q, k, v].map((t) => upload(gpu, t));
 *   const { out } = await downloadState(gpu, densePrefillWebGpu(gpu, { query, key, value }));
 *   const cpu = denseAttention({ query: q, key: k, value: v }); // causal, like the kernel
 *   out.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.out.data[i]) < 1e-4));
 *   gpu.destroy();
 * }
 * ```
 */
export function densePrefillWebGpu(
  gpu: GpuContext,
  input: DensePrefillInput,
  options: DensePrefillOptions = {},
): GpuAttentionState {
  const action = "prefill attention on GPU";
  if (input === null || typeof input !== "object") {
    throw new TypeError(`Cannot ${action}: input must be an object, got ${describeValue(input)}`);
  }
  const query = input.query;
  requireGpuThd(action, "query", query);
  requireBindable(gpu, action, "query", query.buffer);
  const kv = "kv" in input ? input.kv : kvViewOfTensors(gpu, input.key, input.value);
  const [tq, heads, d] = query.shape as [number, number, number];
  if (kv.headDim !== d) {
    throw new TypeError(
      `Cannot ${action}: query headDim (${d}) does not match key headDim (${kv.headDim})`,
    );
  }
  if (heads % kv.kvHeads !== 0) {
    throw new RangeError(
      `Cannot ${action}: query heads (${heads}) must be a multiple of kvHeads, got kvHeads ${kv.kvHeads}`,
    );
  }
  const { scale, softCap } = resolveScale(action, d, options.scale, options.softCap);
  const causal = options.causal ?? true;
  if (typeof causal !== "boolean") {
    throw new TypeError(`Cannot ${action}: causal must be a boolean, got ${describeValue(causal)}`);
  }
  const tk = kv.length;
  const keyOffset = requireInt(action, "keyOffset", options.keyOffset ?? 0);
  const queryOffset = requireInt(
    action,
    "queryOffset",
    options.queryOffset ?? keyOffset + tk - tq,
  );
  const shift = queryOffset - keyOffset;
  if (Math.abs(shift) > 2 ** 30) {
    throw new RangeError(
      `Cannot ${action}: queryOffset − keyOffset must be within ±2^30, got ${shift}`,
    );
  }
  gpu.checkAlive(action);
  const group = heads / kv.kvHeads;
  const wg = PREFILL_WORKGROUP;
  const kvStorage = storageOf(gpu, kv.dtype);
  const tiles = prefillTiles(d, kvStorage, gpu.limits.maxComputeWorkgroupStorageSize);
  const pipeline = gpu.pipeline("dense-prefill", {
    headDim: d,
    workgroupSize: wg,
    tileRows: tiles.tileRows,
    tileKeys: tiles.tileKeys,
    query: storageOf(gpu, query.dtype),
    kv: kvStorage,
  }, densePrefillWgsl);

  const result: GpuAttentionState = {
    out: createGpuTensor(gpu, "f32", [tq, heads, d], { layout: "thd" }),
    lse: createGpuTensor(gpu, "f32", [tq, heads]),
  };
  const segments = kv.segments.filter((s) => s.tokenStart < tk);
  const rows = tq * heads;
  const direct = segments.length <= 1;
  const release: GPUBuffer[] = [];
  let outBuf = result.out.buffer, lseBuf = result.lse.buffer;
  if (!direct) {
    outBuf = gpu.pool.acquire(
      segments.length * rows * d * 4,
      STORAGE_USAGE,
      "longctx prefill partials",
    );
    lseBuf = gpu.pool.acquire(
      segments.length * rows * 4,
      STORAGE_USAGE,
      "longctx prefill partials",
    );
    release.push(outBuf, lseBuf);
  }
  const commands: GpuCommand[] = [];
  // With no segment (empty cache) one dispatch over an empty range still writes the empty rows.
  const work = segments.length > 0 ? segments : [kv.segments[0]!];
  work.forEach((seg, s) => {
    const u = gpu.uniform(DENSE_PREFILL_PARAMS.pack({
      tq,
      heads,
      group,
      tk,
      qBase: query.offset,
      qTokenStride: heads * d,
      qHeadStride: d,
      causal: causal ? 1 : 0,
      shift,
      tokenStart: Math.min(seg.tokenStart, tk),
      tokenEnd: Math.min(seg.tokenStart + seg.tokenCount, tk),
      segStart: seg.tokenStart,
      outBase: direct ? 0 : s * rows,
      scale,
      softCap,
      pad0: 0,
      keyBase: seg.keyBase,
      valueBase: seg.valueBase,
      pageSize: kv.pageSize,
      pageStride: kv.pageStride,
      headStride: kv.headStride,
      rowStride: kv.rowStride,
    }));
    release.push(u);
    commands.push({
      kind: "dispatch",
      pipeline,
      bindings: [u, query.buffer, seg.keys, seg.values, outBuf, lseBuf],
      workgroups: [Math.ceil(tq * group / tiles.tileRows), kv.kvHeads],
    });
  });
  if (!direct) {
    commands.push(...mergeCommands(gpu, {
      inOut: outBuf,
      inLse: lseBuf,
      out: result.out.buffer,
      lse: result.lse.buffer,
      headDim: d,
      rows,
      count: segments.length,
      inStride: rows,
      release,
    }));
  }
  gpu.submit("dense-prefill", commands, { release });
  return result;
}
