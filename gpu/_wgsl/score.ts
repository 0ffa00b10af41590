// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * WGSL of the scoring GEMV (private): query rows against many summary keys
 * (chunk keys, landmarks, centroids, page bounds), GQA-aware.
 *
 * @module
 */

import { enableF16, ParamsLayout, readOperand, type WgslStorage } from "./common.ts";

/** Compile-time configuration of {@linkcode scoreWgsl}. */
export interface ScoreConfig {
  [key: string]: string | number | boolean;
  /** Head dimension. */
  headDim: number;
  /** Query rows (query tokens × group heads of one KV head) per workgroup. */
  rows: number;
  /** Threads per workgroup = keys per workgroup. */
  workgroupSize: number;
  /** How queries are read. */
  query: WgslStorage;
  /** How keys are read. */
  keys: WgslStorage;
  /** `"dot"`: `q·k`; `"bound"`: `Σ_i max(q_i·lo_i, q_i·hi_i)` over key bounds (Quest). */
  mode: "dot" | "bound";
}

/** Uniforms of the score kernel. */
export const SCORE_PARAMS: ParamsLayout = new ParamsLayout([
  ["n", "u32"],
  ["kvHeads", "u32"],
  ["group", "u32"],
  ["tq", "u32"],
  ["heads", "u32"],
  ["qBase", "u32"],
  ["keyBase", "u32"],
  ["hiBase", "u32"],
  ["scale", "f32"],
  ["pad0", "u32"],
  ["pad1", "u32"],
  ["pad2", "u32"],
]);

/**
 * Workgroup `(x, kh, z)` scores keys `x·wg … x·wg + wg − 1` of KV head `kh`
 * against query rows `z·rows …` of that head's group (held in workgroup
 * memory): thread `j` reads key `j` once for every row (the GQA group shares
 * the read) and writes `scale · score` to `out[t, h, j]`.
 *
 * Bindings: 0 uniforms, 1 queries `[tq, heads, headDim]`, 2 keys (or lower
 * bounds) `[n, kvHeads, headDim]`, 3 scores f32 `[tq, heads, n]`, 4 upper
 * bounds (mode `"bound"` only).
 */
export function scoreWgsl(c: ScoreConfig): string {
  const d = c.headDim, g = c.rows, wg = c.workgroupSize;
  const bound = c.mode === "bound";
  const term = bound
    ? "let qi = qs[r * D + i];\n          s[r] += max(qi * lo, qi * ld_HI(hb + i));"
    : "s[r] += qs[r * D + i] * lo;";
  return /* wgsl */ `${enableF16(c.query, c.keys)}
${SCORE_PARAMS.wgsl(0)}
${readOperand(1, "Q", c.query)}
${readOperand(2, "K", c.keys)}
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;
${bound ? readOperand(4, "HI", c.keys) : ""}
const D: u32 = ${d}u;
const G: u32 = ${g}u;
const WG: u32 = ${wg}u;

var<workgroup> qs: array<f32, ${g * d}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let kh = wid.y;
  let r0 = wid.z * G;
  let rows = P.tq * P.group;
  for (var e = lid; e < G * D; e += WG) {
    let rr = r0 + e / D;
    var x: f32 = 0.0;
    if (rr < rows) {
      let h = kh * P.group + rr % P.group;
      x = ld_Q(P.qBase + ((rr / P.group) * P.heads + h) * D + e % D);
    }
    qs[e] = x;
  }
  workgroupBarrier();
  let j = wid.x * WG + lid;
  if (j >= P.n) { return; }
  let kb = P.keyBase + (j * P.kvHeads + kh) * D;
  let hb = P.hiBase + (j * P.kvHeads + kh) * D;
  var s: array<f32, ${g}>;
  for (var r = 0u; r < G; r++) { s[r] = 0.0; }
  for (var i = 0u; i < D; i++) {
    let lo = ld_K(kb + i);
    for (var r = 0u; r < G; r++) {
      ${term}
    }
  }
  for (var r = 0u; r < G; r++) {
    let rr = r0 + r;
    if (rr < rows) {
      let h = kh * P.group + rr % P.group;
      OUT[((rr / P.group) * P.heads + h) * P.n + j] = s[r] * P.scale;
    }
  }
}
`;
}
