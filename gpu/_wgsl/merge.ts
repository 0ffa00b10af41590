// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * WGSL of the log-sum-exp merge of attention states (private): the split-K
 * reduce of dense decode, the per-row-group reduce of sparse attend, and
 * `mergeStatesWebGpu`.
 *
 * @module
 */

import { FLAT_WG_FN, NEG_BIG, NEG_INF_BITS, ParamsLayout } from "./common.ts";

/** Compile-time configuration of {@linkcode mergeWgsl}. */
export interface MergeConfig {
  [key: string]: string | number | boolean;
  /** Head dimension. */
  headDim: number;
  /** Threads per workgroup (also the weights computed per chunk). */
  workgroupSize: number;
  /**
   * `false`: output row `r` merges input rows `r + k·inStride`, `k < count`
   * (uniforms). `true`: a plan buffer gives `(outRow, base, stride, count)` per row.
   */
  planned: boolean;
}

/** Uniforms of the merge kernel. */
export const MERGE_PARAMS: ParamsLayout = new ParamsLayout([
  ["rows", "u32"],
  ["count", "u32"],
  ["inStride", "u32"],
  ["pad0", "u32"],
]);

/**
 * One workgroup per output row: the row's maximum `lse` first (every thread,
 * redundantly: `count` reads), then the inputs in chunks of `workgroupSize`
 * whose weights `exp(lse_k − max)` one thread each computes into workgroup
 * memory, while every thread accumulates its dimensions. An input with
 * `lse = −∞` (bits) has weight 0; a row with no weight is written as
 * `out = 0`, `lse = −∞` bits.
 *
 * Bindings: 0 uniforms, 1 inputs `out` `[inRows, headDim]` f32, 2 inputs `lse`
 * `[inRows]` (u32 view of f32), 3 result `out`, 4 result `lse` (u32 view),
 * 5 plan `array<vec4<u32>>` (planned only).
 */
export function mergeWgsl(c: MergeConfig): string {
  const wg = c.workgroupSize, d = c.headDim;
  const plan = c.planned
    ? `@group(0) @binding(5) var<storage, read> PLAN: array<vec4<u32>>;
var<workgroup> wg_plan: vec4<u32>;`
    : "";
  const rowSetup = c.planned
    ? `if (lid == 0u) { wg_plan = PLAN[min(r, P.rows - 1u)]; }
  let e = workgroupUniformLoad(&wg_plan);
  let out_row = e.x; let base = e.y; let stride = e.z; let count = e.w;`
    : `let out_row = r; let base = r; let stride = P.inStride; let count = P.count;`;
  return /* wgsl */ `${MERGE_PARAMS.wgsl(0)}
@group(0) @binding(1) var<storage, read> IN_O: array<f32>;
@group(0) @binding(2) var<storage, read> IN_L: array<u32>;
@group(0) @binding(3) var<storage, read_write> OUT_O: array<f32>;
@group(0) @binding(4) var<storage, read_write> OUT_L: array<u32>;
${plan}
var<workgroup> weights: array<f32, ${wg}>;
${FLAT_WG_FN}
const DPT: u32 = ${Math.ceil(d / wg)}u;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let r = flat_wg(wid, nwg);
  if (r >= P.rows) { return; }
  ${rowSetup}
  var m: f32 = ${NEG_BIG};
  for (var k = 0u; k < count; k++) {
    let bits = IN_L[base + k * stride];
    if (bits != ${NEG_INF_BITS}u) { m = max(m, bitcast<f32>(bits)); }
  }
  var acc: array<f32, DPT>;
  var sum: f32 = 0.0;
  for (var k0 = 0u; k0 < count; k0 += ${wg}u) {
    let k = k0 + lid;
    var w: f32 = 0.0;
    if (k < count) {
      let bits = IN_L[base + k * stride];
      if (bits != ${NEG_INF_BITS}u) { w = exp(bitcast<f32>(bits) - m); }
    }
    weights[lid] = w;
    workgroupBarrier();
    let n = min(${wg}u, count - k0);
    for (var j = 0u; j < n; j++) {
      let wj = weights[j];
      sum += wj;
      let row = (base + (k0 + j) * stride) * ${d}u;
      for (var q = 0u; q < DPT; q++) {
        let i = lid + q * ${wg}u;
        if (i < ${d}u && wj > 0.0) { acc[q] += wj * IN_O[row + i]; }
      }
    }
    workgroupBarrier();
  }
  let inv = select(0.0, 1.0 / sum, sum > 0.0);
  for (var q = 0u; q < DPT; q++) {
    let i = lid + q * ${wg}u;
    if (i < ${d}u) { OUT_O[out_row * ${d}u + i] = acc[q] * inv; }
  }
  if (lid == 0u) {
    OUT_L[out_row] = select(${NEG_INF_BITS}u, bitcast<u32>(m + log(sum)), sum > 0.0);
  }
}
`;
}
