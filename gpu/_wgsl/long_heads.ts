// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * WGSL of the LongHeads helpers (private): the summed group query of the
 * `"kv-head"` GQA variant.
 *
 * @module
 */

import { enableF16, FLAT_WG_FN, ParamsLayout, readOperand, type WgslStorage } from "./common.ts";

/** Compile-time configuration of {@linkcode groupSumWgsl}. */
export interface GroupSumConfig {
  [key: string]: string | number | boolean;
  /** Threads per workgroup. */
  workgroupSize: number;
  /** How queries are read. */
  query: WgslStorage;
}

/** Uniforms of the group-sum kernel. */
export const GROUP_SUM_PARAMS: ParamsLayout = new ParamsLayout([
  ["kvHeads", "u32"],
  ["group", "u32"],
  ["headDim", "u32"],
  ["qBase", "u32"],
]);

/**
 * Thread `e` of the flat grid writes `OUT[e] = Σ_r Q[qBase + (kh·group + r)·D + x]`
 * for `e = kh·D + x`, summing the group's query rows in order (the CPU
 * reference's order, rounded to f32 once at the end as the reference does).
 *
 * Bindings: 0 uniforms, 1 queries `[1, kvHeads·group, D]`, 2 output f32 `[1, kvHeads, D]`.
 */
export function groupSumWgsl(c: GroupSumConfig): string {
  const wg = c.workgroupSize;
  return /* wgsl */ `${enableF16(c.query)}
${GROUP_SUM_PARAMS.wgsl(0)}
${readOperand(1, "Q", c.query)}
@group(0) @binding(2) var<storage, read_write> OUT: array<f32>;
${FLAT_WG_FN}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = flat_wg(wid, nwg) * ${wg}u + lid;
  let d = P.headDim;
  if (e >= P.kvHeads * d) { return; }
  let kh = e / d;
  let x = e % d;
  var s: f32 = 0.0;
  for (var r = 0u; r < P.group; r++) {
    s += ld_Q(P.qBase + (kh * P.group + r) * d + x);
  }
  OUT[e] = s;
}
`;
}
