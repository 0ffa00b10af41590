// Copyright 2026 the longctx authors. MIT license.

/**
 * Dense decode attention on WebGPU: split-K flash-decoding, GQA-aware.
 *
 * @module
 */

import { resolveScale } from "../attention/_validate.ts";
import { describeValue, requirePositiveInt } from "../tensor/validate.ts";
import { type GpuCommand, type GpuContext, STORAGE_USAGE } from "./device.ts";
import { type GpuKvView, kvViewOfTensors } from "./kv_store.ts";
import { mergeCommands } from "./_merge.ts";
import { createGpuTensor, type GpuAttentionState, type GpuTensor } from "./tensor.ts";
import { requireBindable, requireGpuThd, storageOf } from "./_kernel.ts";
import {
  DENSE_DECODE_PARAMS,
  denseDecodeWgsl,
  denseDecodeWorkgroupBytes,
} from "./_wgsl/dense_decode.ts";

/** Threads per workgroup, and keys per tile, of the decode kernel. */
export const DECODE_WORKGROUP = 64;

/** Workgroup-memory budget of one decode workgroup (WebGPU's default limit). */
const WORKGROUP_BUDGET = 16384;

/** Most query heads of a group one decode workgroup serves. */
const MAX_DECODE_ROWS = 16;

/** Workgroups the automatic split size aims for (enough to fill a large GPU). */
const TARGET_WORKGROUPS = 1024;

/** Input of {@linkcode denseDecodeWebGpu}: the query and the cache. */
export type DenseDecodeInput =
  | {
    /** Queries, contiguous `[1, heads, headDim]`, f32 or f16. */
    query: GpuTensor;
    /** A store layer (`store.view(layer)`) or {@linkcode kvViewOfTensors}. */
    kv: GpuKvView;
  }
  | {
    /** Queries, contiguous `[1, heads, headDim]`, f32 or f16. */
    query: GpuTensor;
    /** Keys, contiguous `[tokens, kvHeads, headDim]`, f32 or f16. */
    key: GpuTensor;
    /** Values, same shape and dtype as `key`. */
    value: GpuTensor;
  };

/** Options of {@linkcode denseDecodeWebGpu}. */
export interface DenseDecodeOptions {
  /** Multiplies q·k. @default {1 / Math.sqrt(headDim)} */
  scale?: number;
  /** Logit soft-cap `c · tanh(logit / c)`. @default {undefined} (none) */
  softCap?: number;
  /**
   * Keys per split (rounded up to a multiple of 64).
   * @default {enough splits for about 1024 workgroups, at least 64 keys each}
   */
  splitTokens?: number;
}

/**
 * Attention of one query token over every cached key (decode), on the GPU:
 * exactly `denseAttention` with `queryTokens = 1`.
 *
 * Split-K flash-decoding: the keys are cut into splits; one workgroup per
 * (split, KV head) reads each key and value row **once for the whole GQA
 * group** (up to 16 query heads per workgroup), keeps the group's running
 * max and sum per row, and writes a partial normalised output with its `lse`.
 * A second kernel (the LSE merge, `merge.ts`) reduces the splits. A cache
 * split across several buffers ({@linkcode GpuKvStore}) is one dispatch per
 * buffer into the same partial arrays. Accumulation is f32 whatever the
 * storage dtype.
 *
 * | cost | |
 * | --- | --- |
 * | reads | K and V once per (KV head, block of ≤ 16 group heads) |
 * | dispatches | one per KV segment + one merge |
 * | allocation | the result and pooled partials (`splits × heads × (headDim + 1)` f32) |
 *
 * @see https://crfm.stanford.edu/2023/10/12/flashdecoding.html
 * @param gpu The context.
 * @param input Query `[1, heads, headDim]` and the cache (a {@linkcode GpuKvView} or K/V tensors).
 * @param options Scale, soft-cap, split size.
 * @returns `{ out: [1, heads, headDim], lse: [1, heads] }` on the GPU (pooled; release with `releaseState`).
 * @throws {TypeError} On shape or dtype mismatches.
 * @throws {RangeError} If heads is not a multiple of kvHeads, an option is out of range,
 *   or a K/V tensor exceeds `maxStorageBufferBindingSize`.
 * @throws {GpuDeviceLostError} If the device is lost.
 *
 * @example GQA decode in 4 splits vs the CPU reference (skipped without a GPU)
 * ```ts
 * import { denseDecodeWebGpu, downloadState, tryRequestGpu, upload } from "@longctx/longctx/gpu";
 * import { denseAttention } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const q = randn([1, 8, 32], { seed: 1 });
 *   const [k, v] = [2, 3].map((seed) => randn([250, 2, 32], { seed }));
 *   const [query, key, value] = [q, k, v].map((t) => upload(gpu, t));
 *   const gpuState = denseDecodeWebGpu(gpu, { query, key, value }, { splitTokens: 64 });
 *   const { out, lse } = await downloadState(gpu, gpuState);
 *   const cpu = denseAttention({ query: q, key: k, value: v });
 *   out.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.out.data[i]) < 1e-4));
 *   lse.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.lse.data[i]) < 1e-4));
 *   gpu.destroy(); // frees the uploads and the result with the device
 * }
 * ```
 */
export function denseDecodeWebGpu(
  gpu: GpuContext,
  input: DenseDecodeInput,
  options: DenseDecodeOptions = {},
): GpuAttentionState {
  const action = "decode attention on GPU";
  if (input === null || typeof input !== "object") {
    throw new TypeError(`Cannot ${action}: input must be an object, got ${describeValue(input)}`);
  }
  const query = input.query;
  requireGpuThd(action, "query", query);
  requireBindable(gpu, action, "query", query.buffer);
  const kv = "kv" in input ? input.kv : kvViewOfTensors(gpu, input.key, input.value);
  const [tq, heads, d] = query.shape as [number, number, number];
  if (tq !== 1) {
    throw new TypeError(
      `Cannot ${action}: query must have shape [1, heads, headDim], got ${
        describeValue(query.shape)
      }`,
    );
  }
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
  gpu.checkAlive(action);
  const group = heads / kv.kvHeads;
  const wg = DECODE_WORKGROUP;
  let rows = Math.min(group, MAX_DECODE_ROWS);
  while (rows > 1 && denseDecodeWorkgroupBytes(d, rows, wg) > WORKGROUP_BUDGET) rows--;
  const zGroups = Math.ceil(group / rows);
  const maxDim = gpu.limits.maxComputeWorkgroupsPerDimension;
  let chunk: number;
  if (options.splitTokens !== undefined) {
    chunk = roundUp(requirePositiveInt(action, "splitTokens", options.splitTokens), wg);
  } else {
    const perHead = Math.ceil(TARGET_WORKGROUPS / (kv.kvHeads * zGroups));
    chunk = roundUp(Math.max(1, Math.ceil(kv.length / perHead)), wg);
  }
  for (const seg of kv.segments) {
    chunk = Math.max(chunk, roundUp(Math.ceil(seg.tokenCount / maxDim), wg));
  }

  const pipeline = gpu.pipeline("dense-decode", {
    headDim: d,
    rows,
    workgroupSize: wg,
    query: storageOf(gpu, query.dtype),
    kv: storageOf(gpu, kv.dtype),
  }, denseDecodeWgsl);

  // One dispatch per segment, all writing into one partial array.
  let splits = 0;
  const plan: { seg: (typeof kv.segments)[number]; start: number; end: number; base: number }[] =
    [];
  for (const seg of kv.segments) {
    const start = seg.tokenStart, end = Math.min(seg.tokenStart + seg.tokenCount, kv.length);
    if (end <= start) continue;
    plan.push({ seg, start, end, base: splits });
    splits += Math.ceil((end - start) / chunk);
  }
  const partialOut = gpu.pool.acquire(
    splits * heads * d * 4,
    STORAGE_USAGE,
    "longctx decode partials",
  );
  const partialLse = gpu.pool.acquire(splits * heads * 4, STORAGE_USAGE, "longctx decode partials");
  const release: GPUBuffer[] = [partialOut, partialLse];
  const commands: GpuCommand[] = [];
  for (const p of plan) {
    const u = gpu.uniform(DENSE_DECODE_PARAMS.pack({
      qBase: query.offset,
      qHeadStride: d,
      heads,
      group,
      tokenStart: p.start,
      tokenEnd: p.end,
      segStart: p.seg.tokenStart,
      chunk,
      splitBase: p.base,
      scale,
      softCap,
      pad0: 0,
      keyBase: p.seg.keyBase,
      valueBase: p.seg.valueBase,
      pageSize: kv.pageSize,
      pageStride: kv.pageStride,
      headStride: kv.headStride,
      rowStride: kv.rowStride,
    }));
    release.push(u);
    commands.push({
      kind: "dispatch",
      pipeline,
      bindings: [u, query.buffer, p.seg.keys, p.seg.values, partialOut, partialLse],
      workgroups: [Math.ceil((p.end - p.start) / chunk), kv.kvHeads, zGroups],
    });
  }
  const result: GpuAttentionState = {
    out: createGpuTensor(gpu, "f32", [1, heads, d], { layout: "thd" }),
    lse: createGpuTensor(gpu, "f32", [1, heads]),
  };
  commands.push(...mergeCommands(gpu, {
    inOut: partialOut,
    inLse: partialLse,
    out: result.out.buffer,
    lse: result.lse.buffer,
    headDim: d,
    rows: heads,
    count: splits,
    inStride: heads,
    release,
  }));
  gpu.submit("dense-decode", commands, { release });
  return result;
}

function roundUp(x: number, m: number): number {
  return Math.ceil(x / m) * m;
}
