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
 * ```ts
 * import { createGpuTensor, download, tryRequestGpu, upload } from "@longctx/longctx/gpu";
 * import { tensor } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const myKernelWgsl = (c: { workgroup: number }): string => `
 *   struct Params { n: u32, scale: f32 }
 *   @group(0) @binding(0) var<uniform> p: Params;
 *   @group(0) @binding(1) var<storage, read> a: array<f32>;
 *   @group(0) @binding(2) var<storage, read_write> out: array<f32>;
 *   @compute @workgroup_size(${c.workgroup}) fn main(@builtin(global_invocation_id) g: vec3u) {
 *     if (g.x < p.n) { out[g.x] = p.scale * a[g.x]; }
 *   }`;
 * const { gpu } = await tryRequestGpu();                             // once (undefined: no GPU)
 * if (gpu) {
 *   const pipeline = gpu.pipeline("my-kernel", { workgroup: 64 }, myKernelWgsl); // cached by kernel + config
 *   const a = upload(gpu, tensor(new Float32Array([1, 2, 3]), [3]));
 *   const out = createGpuTensor(gpu, "f32", [3]);
 *   const params = new ArrayBuffer(8);                                // Params { n: 3, scale: 0.5 }
 *   new Uint32Array(params)[0] = 3;
 *   new Float32Array(params)[1] = 0.5;
 *   const u = gpu.uniform(params);                                    // pooled uniform buffer
 *   gpu.submit("my-kernel", [{ kind: "dispatch", pipeline, bindings: [u, a.buffer, out.buffer], workgroups: [1] }],
 *     { release: [u] });                                            // one command buffer
 *   const host = await download(gpu, out);                           // explicit read-back
 *   assert.deepEqual([...host.data], [0.5, 1, 1.5]);
 *   gpu.destroy();
 * }
 * ```
 *
 * WGSL lives in private `_wgsl/*.ts` builders (a function of the compile-time
 * config returning the shader text); `ParamsLayout` in `_wgsl/common.ts`
 * declares a uniform struct once for both WGSL and packing. Kernels never
 * compute with infinities: an empty row's `lse` is written as the bits of
 * `-Infinity` (see `_wgsl/common.ts`).
 *
 * The examples of this entry run under `deno test --doc` (a deliberate
 * departure from STYLE.md §10, which fences GPU examples as `ts ignore`):
 * each gets a device with `tryRequestGpu()` and runs its GPU part only when
 * an adapter exists, asserting against the CPU reference. CI has Mesa's
 * lavapipe, so every example is executed there instead of only compiled.
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
