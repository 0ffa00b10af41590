// Copyright 2026 the longctx authors. MIT license.

/**
 * `denseAttention` with a device: host tensors in, host state out, the GPU
 * kernels in between; and {@linkcode denseAttentionAuto}, which applies the
 * backend rule of {@linkcode chooseBackend} and falls back to the CPU
 * reference when WebGPU is missing, too slow or lost.
 *
 * @module
 */

import { denseAttention, type DenseAttentionOptions } from "../attention/dense.ts";
import type { AttentionInput, AttentionState } from "../attention/types.ts";
import { checkQkv } from "../attention/_validate.ts";
import { describeValue, requireInt } from "../tensor/validate.ts";
import {
  type Backend,
  type BackendChoice,
  chooseBackend,
  type GpuContext,
  GpuDeviceLostError,
} from "./device.ts";
import { denseDecodeWebGpu } from "./dense_decode.ts";
import { densePrefillWebGpu } from "./dense_prefill.ts";
import {
  downloadState,
  type GpuDType,
  type GpuTensor,
  releaseState,
  releaseTensor,
  upload,
} from "./tensor.ts";

/** Options of {@linkcode denseAttentionWebGpu}: `denseAttention`'s, plus the upload dtype. */
export interface DenseAttentionWebGpuOptions extends DenseAttentionOptions {
  /** Store keys and values on the device as this dtype. @default {the input's dtype} */
  kvDtype?: "f32" | "f16";
}

/**
 * `denseAttention` computed on the GPU: uploads `input`, runs split-K decode
 * (one query token that sees every key) or tiled prefill, downloads
 * `{ out, lse }` and returns the pooled buffers. Same contract, same options,
 * same results up to f32 rounding (and f16 storage when `kvDtype` is `"f16"`).
 *
 * Use it to check a device or for one-off calls; a decode loop should keep
 * its cache on the device (`GpuKvStore`) and call the kernels directly.
 *
 * @param gpu The context.
 * @param input Queries `[queryTokens, heads, headDim]`, keys and values `[keyTokens, kvHeads, headDim]`.
 * @param options As `denseAttention`, plus `kvDtype`.
 * @returns The state on the host.
 * @throws {TypeError} / {RangeError} As `denseAttention`.
 * @throws {GpuDeviceLostError} If the device is lost.
 *
 * @example f16 K/V storage matches the CPU on f16-rounded K/V (skipped without a GPU)
 * ```ts
 * import { denseAttentionWebGpu, tryRequestGpu } from "@longctx/longctx/gpu";
 * import { denseAttention } from "@longctx/longctx/attention";
 * import { contiguous, randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const [key, value] = [2, 3].map((seed) => randn([200, 2, 32], { seed }));
 *   const query = randn([1, 8, 32], { seed: 1 });
 *   const { out, lse } = await denseAttentionWebGpu(gpu, { query, key, value }, { kvDtype: "f16" });
 *   const cpu = denseAttention({ query, key: contiguous(key, "f16"), value: contiguous(value, "f16") });
 *   out.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.out.data[i]) < 1e-4));
 *   lse.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.lse.data[i]) < 1e-4));
 *   gpu.destroy(); // the pooled buffers were already returned
 * }
 * ```
 */
export async function denseAttentionWebGpu(
  gpu: GpuContext,
  input: AttentionInput,
  options: DenseAttentionWebGpuOptions = {},
): Promise<AttentionState> {
  const action = "compute attention on GPU";
  const g = checkQkv(action, input.query, input.key, input.value);
  const kvDtype: GpuDType = options.kvDtype ?? input.key.dtype;
  if (kvDtype !== "f32" && kvDtype !== "f16") {
    throw new TypeError(
      `Cannot ${action}: kvDtype must be "f32" or "f16", got ${describeValue(kvDtype)}`,
    );
  }
  const causal = options.causal ?? true;
  if (typeof causal !== "boolean") {
    throw new TypeError(`Cannot ${action}: causal must be a boolean, got ${describeValue(causal)}`);
  }
  const keyOffset = requireInt(action, "keyOffset", options.keyOffset ?? 0);
  const queryOffset = requireInt(
    action,
    "queryOffset",
    options.queryOffset ?? keyOffset + g.keyTokens - g.queryTokens,
  );
  const seesAll = !causal || queryOffset >= keyOffset + g.keyTokens - 1;
  const tensors: GpuTensor[] = [];
  try {
    const query = upload(gpu, input.query);
    tensors.push(query);
    const key = upload(gpu, input.key, { dtype: kvDtype });
    tensors.push(key);
    const value = upload(gpu, input.value, { dtype: kvDtype });
    tensors.push(value);
    const common = {
      ...(options.scale !== undefined ? { scale: options.scale } : {}),
      ...(options.softCap !== undefined ? { softCap: options.softCap } : {}),
    };
    const state = g.queryTokens === 1 && seesAll && g.keyTokens > 0
      ? denseDecodeWebGpu(gpu, { query, key, value }, common)
      : densePrefillWebGpu(gpu, { query, key, value }, options);
    try {
      return await downloadState(gpu, state);
    } finally {
      if (gpu.lost === undefined) releaseState(gpu, state);
    }
  } finally {
    if (gpu.lost === undefined) { for (const t of tensors) releaseTensor(gpu, t); }
  }
}

/** Options of {@linkcode denseAttentionAuto}. */
export interface DenseAttentionAutoOptions extends DenseAttentionWebGpuOptions {
  /** Backend request (see `chooseBackend`). @default {"auto"} */
  backend?: Backend;
  /** A device to use (recommended for repeated calls: otherwise one is requested and destroyed per call). */
  gpu?: GpuContext;
  /** Let `"auto"` run on a software adapter. @default {false} */
  allowSoftware?: boolean;
  /** `"auto"` keeps problems below this many multiply-adds on the CPU. @default {GPU_MIN_WORK} */
  minWork?: number;
}

/** Result of {@linkcode denseAttentionAuto}. */
export interface DenseAttentionAutoResult {
  /** The attention state (on the host). */
  state: AttentionState;
  /** Which backend ran, and why. */
  choice: BackendChoice;
}

/**
 * Dense attention on the backend the rule of `chooseBackend` picks: the GPU
 * when one is worth it, else `denseAttention`. Under `"auto"`, a device lost
 * mid-call is caught and the CPU result returned (the reason says so).
 *
 * @param input Queries, keys, values as `denseAttention`.
 * @param options Backend request, device, policies, and `denseAttention`'s options.
 * @returns The state and the {@linkcode BackendChoice}.
 * @throws {WebGpuUnavailableError} For `backend: "webgpu"` without a device.
 * @throws {TypeError} / {RangeError} As `denseAttention`.
 *
 * @example Tiny problems stay on the CPU under "auto"
 * ```ts
 * import { denseAttentionAuto } from "@longctx/longctx/gpu";
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const input = { query: randn([1, 4, 8], { seed: 1 }), key: randn([16, 2, 8], { seed: 2 }), value: randn([16, 2, 8], { seed: 3 }) };
 * const { state, choice } = await denseAttentionAuto(input);
 * assert.equal(choice.backend, "cpu");
 * assert.deepEqual(state.out.shape, [1, 4, 8]);
 * ```
 */
export async function denseAttentionAuto(
  input: AttentionInput,
  options: DenseAttentionAutoOptions = {},
): Promise<DenseAttentionAutoResult> {
  const g = checkQkv("compute attention", input.query, input.key, input.value);
  const work = 2 * g.queryTokens * g.keyTokens * g.heads * g.headDim;
  const choice = await chooseBackend({
    backend: options.backend ?? "auto",
    work,
    ...(options.gpu !== undefined ? { gpu: options.gpu } : {}),
    ...(options.allowSoftware !== undefined ? { allowSoftware: options.allowSoftware } : {}),
    ...(options.minWork !== undefined ? { minWork: options.minWork } : {}),
  });
  const cpuOptions: DenseAttentionOptions = { ...options };
  for (const k of ["backend", "gpu", "allowSoftware", "minWork", "kvDtype"] as const) {
    delete (cpuOptions as Record<string, unknown>)[k];
  }
  if (choice.gpu === undefined) return { state: denseAttention(input, cpuOptions), choice };
  const owned = options.gpu === undefined;
  try {
    const state = await denseAttentionWebGpu(choice.gpu, input, options);
    return { state, choice };
  } catch (e) {
    if (!(e instanceof GpuDeviceLostError) || (options.backend ?? "auto") !== "auto") throw e;
    return {
      state: denseAttention(input, cpuOptions),
      choice: { backend: "cpu", gpu: undefined, reason: `auto: ${e.message}; ran on the CPU` },
    };
  } finally {
    if (owned) choice.gpu.destroy();
  }
}
