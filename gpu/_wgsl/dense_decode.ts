// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * WGSL of split-K flash-decoding (private): one workgroup per (split of the
 * keys, KV head, block of the GQA group's query heads) writes a partial
 * normalised output and its `lse`; the merge kernel reduces the splits.
 *
 * @module
 */

import {
  enableF16,
  KV_LAYOUT_FIELDS,
  KV_ROW_FN,
  NEG_BIG,
  NEG_INF_BITS,
  onlineSoftmaxTile,
  ParamsLayout,
  readOperand,
  type WgslStorage,
} from "./common.ts";

/** Compile-time configuration of {@linkcode denseDecodeWgsl}. */
export interface DenseDecodeConfig {
  [key: string]: string | number | boolean;
  /** Head dimension. */
  headDim: number;
  /** Query heads of one GQA group handled by a workgroup (the KV tile is read once for all). */
  rows: number;
  /** Threads per workgroup = keys per tile. */
  workgroupSize: number;
  /** How queries are read. */
  query: WgslStorage;
  /** How keys and values are read. */
  kv: WgslStorage;
}

/** Uniforms of the decode kernel. */
export const DENSE_DECODE_PARAMS: ParamsLayout = new ParamsLayout([
  ["qBase", "u32"],
  ["qHeadStride", "u32"],
  ["heads", "u32"],
  ["group", "u32"],
  ["tokenStart", "u32"],
  ["tokenEnd", "u32"],
  ["segStart", "u32"],
  ["chunk", "u32"],
  ["splitBase", "u32"],
  ["scale", "f32"],
  ["softCap", "f32"],
  ["pad0", "u32"],
  ...KV_LAYOUT_FIELDS,
]);

/** Workgroup memory the decode kernel uses for a config, in bytes. */
export function denseDecodeWorkgroupBytes(headDim: number, rows: number, wg: number): number {
  return 4 * (rows * headDim + rows * wg + 3 * rows + wg);
}

/**
 * Per tile of `workgroupSize` keys:
 * 1. thread `j` reads key `j` once and scores it against the `rows` queries
 *    (held in workgroup memory; the group shares the key read);
 * 2. threads `r < rows` update row `r`'s running max and rescale factor;
 * 3. thread `j` exponentiates its column; threads `r < rows` add the row sums;
 * 4. every thread rescales and accumulates its dimensions `i ≡ lid (mod wg)`
 *    of all rows, reading each value row once, coalesced.
 * The split's result is written normalised (`acc / l`) with `lse = m + ln l`,
 * or 0 and the bits of −∞ when the split is empty.
 *
 * Bindings: 0 uniforms, 1 queries, 2 keys, 3 values, 4 partial `out`
 * `[splits, heads, headDim]`, 5 partial `lse` `[splits, heads]` (u32 view).
 */
export function denseDecodeWgsl(c: DenseDecodeConfig): string {
  const d = c.headDim, g = c.rows, wg = c.workgroupSize;
  const dpt = Math.ceil(d / wg);
  return /* wgsl */ `${enableF16(c.query, c.kv)}
${DENSE_DECODE_PARAMS.wgsl(0)}
${readOperand(1, "Q", c.query)}
${readOperand(2, "K", c.kv)}
${readOperand(3, "V", c.kv)}
@group(0) @binding(4) var<storage, read_write> PO: array<f32>;
@group(0) @binding(5) var<storage, read_write> PL: array<u32>;
${KV_ROW_FN}
const D: u32 = ${d}u;
const G: u32 = ${g}u;
const WG: u32 = ${wg}u;
const DPT: u32 = ${dpt}u;

var<workgroup> qs: array<f32, ${g * d}>;
var<workgroup> ps: array<f32, ${g * wg}>;
var<workgroup> row_scale: array<f32, ${g}>;
var<workgroup> row_max: array<f32, ${g}>;
var<workgroup> row_l: array<f32, ${g}>;
var<workgroup> vrow: array<u32, ${wg}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let split = wid.x;
  let kh = wid.y;
  let g0 = wid.z * G;
  let t0 = P.tokenStart + split * P.chunk;
  let t1 = min(t0 + P.chunk, P.tokenEnd);
  for (var e = lid; e < G * D; e += WG) {
    let r = e / D;
    var x: f32 = 0.0;
    if (g0 + r < P.group) { x = ld_Q(P.qBase + (kh * P.group + g0 + r) * P.qHeadStride + e % D); }
    qs[e] = x;
  }
  var acc: array<f32, ${g * dpt}>;
  var m: f32 = ${NEG_BIG};
  var l: f32 = 0.0;
  workgroupBarrier();
  for (var tb = t0; tb < t1; tb += WG) {
    let n = min(WG, t1 - tb);
    if (lid < n) {
      let row = kv_row(tb + lid - P.segStart, kh);
      vrow[lid] = P.valueBase + row;
      let kb = P.keyBase + row;
      // Zeroed explicitly: a var declared in a loop is not re-initialised on every
      // iteration by every WGSL compiler (naga hoists it to the function entry).
      var s: array<f32, ${g}>;
      for (var r = 0u; r < G; r++) { s[r] = 0.0; }
      for (var i = 0u; i < D; i++) {
        let kv = ld_K(kb + i);
        for (var r = 0u; r < G; r++) { s[r] += qs[r * D + i] * kv; }
      }
      for (var r = 0u; r < G; r++) {
        var x = s[r] * P.scale;
        if (P.softCap > 0.0) { x = P.softCap * tanh(x / P.softCap); }
        ps[r * WG + lid] = x;
      }
    }
    workgroupBarrier();
    ${onlineSoftmaxTile("let v = ld_V(vrow[j] + i);")}
    workgroupBarrier();
  }
  if (lid < G) {
    row_l[lid] = l;
    row_max[lid] = m;
  }
  workgroupBarrier();
  for (var r = 0u; r < G; r++) {
    if (g0 + r < P.group) {
      let slot = (P.splitBase + split) * P.heads + kh * P.group + g0 + r;
      let lr = row_l[r];
      let inv = select(0.0, 1.0 / lr, lr > 0.0);
      for (var q = 0u; q < DPT; q++) {
        let i = lid + q * WG;
        if (i < D) { PO[slot * D + i] = acc[r * DPT + q] * inv; }
      }
      if (lid == 0u) {
        PL[slot] = select(${NEG_INF_BITS}u, bitcast<u32>(row_max[r] + log(lr)), lr > 0.0);
      }
    }
  }
}
`;
}
