// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * WGSL of tiled causal prefill (private): a FlashAttention-style online
 * softmax where each workgroup owns a tile of query rows of one KV head
 * (query tokens × the GQA group, so a K/V tile serves the whole group) and
 * streams K/V tiles through workgroup memory.
 *
 * @module
 */

import {
  enableF16,
  KV_LAYOUT_FIELDS,
  KV_ROW_FN,
  NEG_BIG,
  NEG_INF_BITS,
  ParamsLayout,
  readOperand,
  tileType,
  type WgslStorage,
} from "./common.ts";

/** Compile-time configuration of {@linkcode densePrefillWgsl}. */
export interface DensePrefillConfig {
  [key: string]: string | number | boolean;
  /** Head dimension. */
  headDim: number;
  /** Threads per workgroup. */
  workgroupSize: number;
  /** Query rows per workgroup (query tokens × group heads of one KV head). */
  tileRows: number;
  /** Keys per K/V tile in workgroup memory. */
  tileKeys: number;
  /** How queries are read. */
  query: WgslStorage;
  /** How keys and values are read (and the tile element type: f16 tiles for native f16). */
  kv: WgslStorage;
}

/** Bytes the K and V tiles aim for. */
export const PREFILL_TILE_BYTES = 16384;

/**
 * Tile sizes of the prefill kernel: `tileRows = clamp(⌊2048 / headDim⌋, 1, 16)`
 * query rows (so each thread accumulates about 32 floats), and `tileKeys`
 * keys so that the K and V tiles fill {@linkcode PREFILL_TILE_BYTES}
 * (`⌊16384 / (2 · headDim · bytes)⌋`, at most 64), shrunk until everything
 * fits `limit` bytes of workgroup memory.
 */
export function prefillTiles(
  headDim: number,
  kv: WgslStorage,
  limit: number,
): { tileRows: number; tileKeys: number } {
  const tb = tileType(kv) === "f16" ? 2 : 4;
  let rows = Math.max(1, Math.min(16, Math.floor(2048 / headDim)));
  let keys = Math.max(1, Math.min(64, Math.floor(PREFILL_TILE_BYTES / (2 * headDim * tb))));
  const bytes = (): number => prefillWorkgroupBytes(headDim, rows, keys, tb);
  while (bytes() > limit && keys > 1) keys--;
  while (bytes() > limit && rows > 1) rows--;
  return { tileRows: rows, tileKeys: keys };
}

function prefillWorkgroupBytes(d: number, rows: number, keys: number, tb: number): number {
  return 4 * rows * d + 2 * tb * keys * d + 4 * rows * keys + 16 * rows;
}

/** Uniforms of the prefill kernel. */
export const DENSE_PREFILL_PARAMS: ParamsLayout = new ParamsLayout([
  ["tq", "u32"],
  ["heads", "u32"],
  ["group", "u32"],
  ["tk", "u32"],
  ["qBase", "u32"],
  ["qTokenStride", "u32"],
  ["qHeadStride", "u32"],
  ["causal", "u32"],
  ["shift", "i32"],
  ["tokenStart", "u32"],
  ["tokenEnd", "u32"],
  ["segStart", "u32"],
  ["outBase", "u32"],
  ["scale", "f32"],
  ["softCap", "f32"],
  ["pad0", "u32"],
  ...KV_LAYOUT_FIELDS,
]);

/**
 * Row `r` of workgroup `x` is row `x · tileRows + r` of the KV head: query
 * token `t = row / group`, head `kh·group + row mod group`; it sees keys
 * `j < clamp(t + shift + 1, 0, tk)` when causal (`shift = queryOffset −
 * keyOffset`). Tiles past the workgroup's last row's horizon are skipped.
 *
 * Per K/V tile: the scores of all (row, key) pairs are computed from the Q, K
 * tiles in workgroup memory (a few dot products per thread); threads
 * `r < tileRows` update row `r`'s running max and rescale factor; the scores
 * are exponentiated in place (masked pairs give 0); then every thread
 * rescales and accumulates its dimensions `i ≡ lid (mod workgroupSize)` of all
 * rows, reading each value of the tile once for every row. Private state per
 * thread is `tileRows · ⌈headDim / workgroupSize⌉` floats.
 *
 * Bindings: 0 uniforms, 1 queries, 2 keys, 3 values, 4 `out` (f32 rows of
 * headDim), 5 `lse` (u32 view).
 */
export function densePrefillWgsl(c: DensePrefillConfig): string {
  const d = c.headDim, wg = c.workgroupSize, bq = c.tileRows, bk = c.tileKeys;
  const dpt = Math.ceil(d / wg);
  const tt = tileType(c.kv);
  return /* wgsl */ `${enableF16(c.query, c.kv)}
${DENSE_PREFILL_PARAMS.wgsl(0)}
${readOperand(1, "Q", c.query)}
${readOperand(2, "K", c.kv)}
${readOperand(3, "V", c.kv)}
@group(0) @binding(4) var<storage, read_write> OUT: array<f32>;
@group(0) @binding(5) var<storage, read_write> LSE: array<u32>;
${KV_ROW_FN}
const D: u32 = ${d}u;
const WG: u32 = ${wg}u;
const BQ: u32 = ${bq}u;
const BK: u32 = ${bk}u;
const DPT: u32 = ${dpt}u;

var<workgroup> qt: array<f32, ${bq * d}>;
var<workgroup> kt: array<${tt}, ${bk * d}>;
var<workgroup> vt: array<${tt}, ${bk * d}>;
var<workgroup> st: array<f32, ${bq * bk}>;
var<workgroup> row_end: array<u32, ${bq}>;
var<workgroup> row_max: array<f32, ${bq}>;
var<workgroup> row_scale: array<f32, ${bq}>;
var<workgroup> row_l: array<f32, ${bq}>;

fn horizon(t: u32) -> u32 {
  if (P.causal == 0u) { return P.tokenEnd; }
  let v = clamp(i32(t) + P.shift + 1, 0, i32(P.tk));
  return min(P.tokenEnd, u32(v));
}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let kh = wid.y;
  let rows = P.tq * P.group;
  let r0 = wid.x * BQ;
  for (var e = lid; e < BQ * D; e += WG) {
    let r = r0 + e / D;
    var x: f32 = 0.0;
    if (r < rows) {
      let t = r / P.group;
      let h = kh * P.group + r % P.group;
      x = ld_Q(P.qBase + t * P.qTokenStride + h * P.qHeadStride + e % D);
    }
    qt[e] = x;
  }
  for (var r = lid; r < BQ; r += WG) {
    var end = 0u;
    if (r0 + r < rows) { end = horizon((r0 + r) / P.group); }
    row_end[r] = end;
    row_max[r] = ${NEG_BIG};
    row_l[r] = 0.0;
  }
  var acc: array<f32, ${bq * dpt}>;
  let wg_end = horizon((min(rows, r0 + BQ) - 1u) / P.group);
  workgroupBarrier();
  for (var kb = P.tokenStart; kb < wg_end; kb += BK) {
    let n = min(BK, wg_end - kb);
    for (var e = lid; e < n * D; e += WG) {
      let j = e / D;
      let row = kv_row(kb + j - P.segStart, kh) + (e - j * D);
      kt[e] = ${tt}(ld_K(P.keyBase + row));
      vt[e] = ${tt}(ld_V(P.valueBase + row));
    }
    workgroupBarrier();
    for (var p = lid; p < BQ * BK; p += WG) {
      let r = p / BK;
      let j = p % BK;
      var x: f32 = 0.0;
      if (j < n && kb + j < row_end[r]) {
        var dot: f32 = 0.0;
        for (var i = 0u; i < D; i++) { dot += qt[r * D + i] * f32(kt[j * D + i]); }
        x = dot * P.scale;
        if (P.softCap > 0.0) { x = P.softCap * tanh(x / P.softCap); }
      }
      st[p] = x;
    }
    workgroupBarrier();
    if (lid < BQ) {
      let nv = min(n, max(row_end[lid], kb) - kb);
      let m = row_max[lid];
      var mx = m;
      for (var j = 0u; j < nv; j++) { mx = max(mx, st[lid * BK + j]); }
      row_scale[lid] = select(exp(m - mx), 0.0, row_l[lid] == 0.0);
      row_max[lid] = mx;
    }
    workgroupBarrier();
    for (var p = lid; p < BQ * BK; p += WG) {
      let r = p / BK;
      let j = p % BK;
      var e: f32 = 0.0;
      if (j < n && kb + j < row_end[r]) { e = exp(st[p] - row_max[r]); }
      st[p] = e;
    }
    workgroupBarrier();
    if (lid < BQ) {
      var sum: f32 = 0.0;
      for (var j = 0u; j < n; j++) { sum += st[lid * BK + j]; }
      row_l[lid] = row_l[lid] * row_scale[lid] + sum;
    }
    for (var q = 0u; q < DPT; q++) {
      let i = lid + q * WG;
      if (i < D) {
        for (var r = 0u; r < BQ; r++) { acc[r * DPT + q] *= row_scale[r]; }
        for (var j = 0u; j < n; j++) {
          let v = f32(vt[j * D + i]);
          for (var r = 0u; r < BQ; r++) { acc[r * DPT + q] += st[r * BK + j] * v; }
        }
      }
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < BQ; r++) {
    let row = r0 + r;
    if (row < rows) {
      let o = P.outBase + (row / P.group) * P.heads + kh * P.group + row % P.group;
      let l = row_l[r];
      let inv = select(0.0, 1.0 / l, l > 0.0);
      for (var q = 0u; q < DPT; q++) {
        let i = lid + q * WG;
        if (i < D) { OUT[o * D + i] = acc[r * DPT + q] * inv; }
      }
      if (lid == 0u) {
        LSE[o] = select(${NEG_INF_BITS}u, bitcast<u32>(row_max[r] + log(l)), l > 0.0);
      }
    }
  }
}
`;
}
