// Copyright 2026 the longctx authors. MIT license.

/**
 * The log-sum-exp merge of attention states on the GPU: the exact
 * counterpart of `mergeStates` (`attention/merge_states.ts`), and the reduce
 * step of split-K decode and sparse attend.
 *
 * @module
 */

import { describeValue } from "../tensor/validate.ts";
import { type GpuCommand, type GpuContext, STORAGE_USAGE } from "./device.ts";
import {
  createGpuTensor,
  type GpuAttentionState,
  type GpuTensor,
  requireContiguous,
} from "./tensor.ts";
import { mergeCommands } from "./_merge.ts";

/**
 * Merges attention states computed over **disjoint** key sets into the state
 * over their union, on the GPU:
 * `lse = log Σ exp(lse_i)`, `out = Σ exp(lse_i − lse) · out_i`.
 * States with `lse = −∞` carry no weight; a row where all are empty gets
 * `out = 0`, `lse = −∞`, exactly as `mergeStates`.
 *
 * The states are first copied into one stacked buffer (`copyBufferToBuffer`),
 * then one workgroup per row merges them.
 *
 * | cost | |
 * | --- | --- |
 * | reads | every input once (plus the stacking copy) |
 * | dispatches | 1 (rows split over a 2-D grid past 65535) |
 * | allocation | the result and two pooled temporaries |
 *
 * @param gpu The context.
 * @param states One or more states with equal shapes: `out` `[tokens, heads, headDim]`,
 *   `lse` `[tokens, heads]`, contiguous f32.
 * @returns A new state (pooled buffers; release with `releaseState`).
 * @throws {TypeError} If `states` is empty or shapes differ.
 * @throws {GpuDeviceLostError} If the device is lost.
 *
 * @example Split-K by hand equals attention over all keys (skipped without a GPU)
 * ```ts
 * import { denseDecodeWebGpu, downloadState, mergeStatesWebGpu, tryRequestGpu, upload } from "@longctx/longctx/gpu";
 * import { denseAttention } from "@longctx/longctx/attention";
 * import { randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const { gpu } = await tryRequestGpu();
 * if (gpu) {
 *   const query = randn([1, 4, 16], { seed: 1 });
 *   const [key, value] = [2, 3].map((seed) => randn([120, 2, 16], { seed }));
 *   const q = upload(gpu, query);
 *   const part = (lo: number, hi: number) => {
 *     const [k, v] = [key, value].map((t) => upload(gpu, sliceAxis(t, 0, lo, hi)));
 *     return denseDecodeWebGpu(gpu, { query: q, key: k, value: v });
 *   };
 *   const [firstHalf, secondHalf] = [part(0, 70), part(70, 120)]; // disjoint key sets
 *   const { out, lse } = await downloadState(gpu, mergeStatesWebGpu(gpu, [firstHalf, secondHalf]));
 *   const cpu = denseAttention({ query, key, value });
 *   out.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.out.data[i]) < 1e-4));
 *   lse.data.forEach((x, i) => assert.ok(Math.abs(x - cpu.lse.data[i]) < 1e-4));
 *   gpu.destroy();
 * }
 * ```
 */
export function mergeStatesWebGpu(
  gpu: GpuContext,
  states: readonly GpuAttentionState[],
): GpuAttentionState {
  const action = "merge attention states on GPU";
  if (!Array.isArray(states) || states.length === 0) {
    throw new TypeError(
      `Cannot ${action}: states must be a non-empty array, got ${describeValue(states)}`,
    );
  }
  const shape = states[0]!.out.shape;
  if (shape.length !== 3) {
    throw new TypeError(
      `Cannot ${action}: states[0].out must have shape [tokens, heads, headDim], got ${
        describeValue(shape)
      }`,
    );
  }
  const [tokens, heads, d] = shape as [number, number, number];
  states.forEach((s, i) => {
    checkTensor(action, `states[${i}].out`, s.out, [tokens, heads, d]);
    checkTensor(action, `states[${i}].lse`, s.lse, [tokens, heads]);
  });
  gpu.checkAlive(action);
  const rows = tokens * heads;
  const n = states.length;
  const stackedOut = gpu.pool.acquire(n * rows * d * 4, STORAGE_USAGE, "longctx merge stack");
  const stackedLse = gpu.pool.acquire(n * rows * 4, STORAGE_USAGE, "longctx merge stack");
  const commands: GpuCommand[] = [];
  states.forEach((s, i) => {
    if (rows === 0) return;
    commands.push({
      kind: "copy",
      src: s.out.buffer,
      srcOffset: s.out.offset * 4,
      dst: stackedOut,
      dstOffset: i * rows * d * 4,
      size: rows * d * 4,
    });
    commands.push({
      kind: "copy",
      src: s.lse.buffer,
      srcOffset: s.lse.offset * 4,
      dst: stackedLse,
      dstOffset: i * rows * 4,
      size: rows * 4,
    });
  });
  const result: GpuAttentionState = {
    out: createGpuTensor(gpu, "f32", [tokens, heads, d], { layout: "thd" }),
    lse: createGpuTensor(gpu, "f32", [tokens, heads]),
  };
  const release = [stackedOut, stackedLse];
  commands.push(
    ...mergeCommands(gpu, {
      inOut: stackedOut,
      inLse: stackedLse,
      out: result.out.buffer,
      lse: result.lse.buffer,
      headDim: d,
      rows,
      count: n,
      inStride: rows,
      release,
    }),
  );
  gpu.submit("merge-states", commands, { release });
  return result;
}

function checkTensor(
  action: string,
  name: string,
  t: GpuTensor,
  shape: readonly number[],
): void {
  requireContiguous(action, name, t);
  if (
    t.dtype !== "f32" || t.shape.length !== shape.length || t.shape.some((x, i) => x !== shape[i])
  ) {
    throw new TypeError(
      `Cannot ${action}: ${name} must be f32 with shape ${describeValue(shape)}, got ${t.dtype} ${
        describeValue(t.shape)
      }`,
    );
  }
}
