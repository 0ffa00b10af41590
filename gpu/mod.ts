// Copyright 2026 the longctx authors. MIT license.

/**
 * The WebGPU runtime and the core fast kernels, exported from `./gpu` only so
 * that pure-TS users never need WebGPU types.
 *
 * | piece | export |
 * | --- | --- |
 * | device, features, limits, backend rule | {@linkcode requestGpu}, {@linkcode tryRequestGpu}, {@linkcode chooseBackend}, {@linkcode GpuContext} |
 * | errors | {@linkcode WebGpuUnavailableError}, {@linkcode GpuDeviceLostError}, {@linkcode GpuValidationError} |
 * | tensors, pool | {@linkcode GpuTensor}, {@linkcode upload}, {@linkcode download}, {@linkcode BufferPool} |
 * | KV cache | {@linkcode GpuKvStore} (fixed capacity, paged, split across buffers), {@linkcode GpuKvView} |
 * | dense decode | {@linkcode denseDecodeWebGpu} (split-K flash-decoding, GQA-aware) |
 * | dense prefill | {@linkcode densePrefillWebGpu} (tiled online softmax, 16 KiB K/V tiles) |
 * | sparse attend | {@linkcode sparseAttendWebGpu} (any `Selection`, RoPE on read) |
 * | merge | {@linkcode mergeStatesWebGpu} (log-sum-exp merge) |
 * | selection helpers | {@linkcode scoreKeysWebGpu} (scoring GEMV), {@linkcode topKWebGpu} (row-wise top-k) |
 * | Landmark decode | {@linkcode landmarkDecodeWebGpu} (landmark scoring, top-k blocks, grouped-softmax attend) |
 * | k-means | {@linkcode kmeansAssignWebGpu} (assignment step, lowest index on ties; update-step sums) |
 * | Squeezed Attention | {@linkcode uploadSqueezedLayer}, {@linkcode squeezedMassWebGpu}, {@linkcode squeezedSelectWebGpu} (centroid lookup, threshold or budget, one or two levels, kept keys → spans), {@linkcode squeezedAttentionWebGpu} |
 * | host convenience | {@linkcode denseAttentionWebGpu}, {@linkcode denseAttentionAuto} |
 *
 * ## Writing a fast path (the internal API)
 *
 * ```ts ignore
 * const gpu = await requestGpu();                                   // once
 * const pipeline = gpu.pipeline("my-kernel", { headDim: 128 }, myKernelWgsl); // cached by kernel + config
 * const u = gpu.uniform(MY_PARAMS.pack({ n, scale }));               // pooled uniform buffer
 * gpu.submit("my-kernel", [{ kind: "dispatch", pipeline, bindings: [u, a.buffer, out.buffer], workgroups: [x, y] }],
 *   { release: [u] });                                              // one command buffer
 * const host = await download(gpu, out);                             // explicit read-back
 * ```
 *
 * WGSL lives in private `_wgsl/*.ts` builders (a function of the compile-time
 * config returning the shader text); `ParamsLayout` in `_wgsl/common.ts`
 * declares a uniform struct once for both WGSL and packing. Kernels never
 * compute with infinities: an empty row's `lse` is written as the bits of
 * `-Infinity` (see `_wgsl/common.ts`).
 *
 * @example Auto backend: the CPU reference unless a hardware GPU is worth it
 * ```ts
 * import { denseAttentionAuto } from "@longctx/longctx/gpu";
 * import { denseAttention } from "@longctx/longctx/attention";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const input = { query: randn([1, 8, 16], { seed: 1 }), key: randn([64, 2, 16], { seed: 2 }), value: randn([64, 2, 16], { seed: 3 }) };
 * const { state, choice } = await denseAttentionAuto(input, { minWork: 0 });
 * console.log(choice.backend, choice.reason);
 * const exact = denseAttention(input);
 * state.out.data.forEach((x, i) => assert.ok(Math.abs(x - exact.out.data[i]) < 1e-4));
 * ```
 *
 * @module
 */

export * from "./device.ts";
export * from "./pool.ts";
export * from "./tensor.ts";
export * from "./kv_store.ts";
export * from "./dense_decode.ts";
export * from "./dense_prefill.ts";
export * from "./dense.ts";
export * from "./sparse_attend.ts";
export * from "./merge.ts";
export * from "./score.ts";
export * from "./topk.ts";
export * from "./long_heads.ts";
export * from "./landmark.ts";
export * from "./kmeans.ts";
export * from "./squeezed.ts";

// Types of the pure-TS entries that the GPU signatures mention, so that this
// entry's documentation is complete on its own.
export type { DType, DTypeArrayMap, FloatDType, Layout, Tensor } from "../tensor/types.ts";
export type { AttentionInput, AttentionState } from "../attention/types.ts";
export type { DenseAttentionOptions } from "../attention/dense.ts";
export type { HeadSelection, Selection } from "../attention/selection.ts";
export type { AttendStats } from "../attention/sparse_attend.ts";
export type { RopeLayout } from "../positional/rope.ts";
export type { Clusters, CoarseClusters, KeyClusters, KmeansGeometry } from "../attention/kmeans.ts";
export type {
  SqueezedCalibration,
  SqueezedIndex,
  SqueezedSelectionOptions,
} from "../attention/squeezed.ts";
