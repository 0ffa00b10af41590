// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * WGSL of the sparse attend kernel (private): one workgroup per *work item*
 * — a run of at most `chunk` consecutive cache indices of one span, for one
 * *row group* (a query token and up to `rows` query heads of one KV head that
 * share a selection) — with RoPE on read, writing a partial softmax state
 * per item that the planned merge reduces per row group.
 *
 * @module
 */

import {
  enableF16,
  FLAT_WG_FN,
  KV_LAYOUT_FIELDS,
  KV_ROW_FN,
  NEG_BIG,
  NEG_INF_BITS,
  onlineSoftmaxTile,
  ParamsLayout,
  readOperand,
  ropeElement,
  ropeTables,
  type WgslStorage,
} from "./common.ts";

/** Compile-time configuration of {@linkcode sparseAttendWgsl}. */
export interface SparseAttendConfig {
  [key: string]: string | number | boolean;
  /** Head dimension. */
  headDim: number;
  /** Query heads per row group (per workgroup). */
  rows: number;
  /** Threads per workgroup = keys per tile. */
  workgroupSize: number;
  /** How queries are read. */
  query: WgslStorage;
  /** How keys and values are read. */
  kv: WgslStorage;
  /** RoPE pairing, or `"none"` for no rotary encoding. */
  rope: "none" | "halves" | "adjacent";
}

/** i32 fields per row group in the meta buffer: t, headStart, rows, kvHead, (4 unused). */
export const GROUP_FIELDS = 8;
/**
 * i32 fields per work item: rowGroup, start, end, seenBase, keyMode, qMode,
 * qPos, slot. Key modes: 0 none, 1 rotate to `seenBase + (j − start)`,
 * 2 rotate to `pos[j]`, 3 rotate by `seenBase + (j − start) − pos[j]`.
 */
export const ITEM_FIELDS = 8;

/** Uniforms of the sparse attend kernel. */
export const SPARSE_ATTEND_PARAMS: ParamsLayout = new ParamsLayout([
  ["heads", "u32"],
  ["qBase", "u32"],
  ["qTokenStride", "u32"],
  ["itemsBase", "u32"],
  ["itemOffset", "u32"],
  ["itemCount", "u32"],
  ["segStart", "u32"],
  ["scale", "f32"],
  ["softCap", "f32"],
  ["pad0", "u32"],
  ["pad1", "u32"],
  ["pad2", "u32"],
  ...KV_LAYOUT_FIELDS,
]);

/** Workgroup memory of the kernel for a config, in bytes. */
export function sparseAttendWorkgroupBytes(headDim: number, rows: number, wg: number): number {
  return 4 * (rows * headDim + rows * wg + 3 * rows + wg + 16);
}

/**
 * The decode kernel's tile loop (see `dense_decode.ts`) over the item's
 * cache indices, with two additions: the query rows are rotated on load when
 * the item says so (`qMode = 1`: to `qPos`), and each key is rotated on read
 * by the item's key mode, pair by pair, with cos/sin from the RoPE tables
 * (`common.ts`), so no rotated copy of a key is ever stored.
 *
 * Bindings: 0 uniforms, 1 queries, 2 keys, 3 values, 4 meta (i32: row groups
 * then items), 5 partial `out` `[slots · rows, headDim]`, 6 partial `lse`
 * (u32 view); with RoPE also 7 positions (i32), 8 RoPE tables.
 */
export function sparseAttendWgsl(c: SparseAttendConfig): string {
  const d = c.headDim, g = c.rows, wg = c.workgroupSize;
  const dpt = Math.ceil(d / wg);
  const half = d >> 1;
  const hasRope = c.rope !== "none";
  const re = hasRope ? ropeElement(c.rope as "halves" | "adjacent", half) : undefined;
  const ropeDecl = hasRope
    ? `@group(0) @binding(7) var<storage, read> POS: array<i32>;\n${ropeTables(8, half)}`
    : "";
  const loadQuery = re === undefined ? `x = ld_Q(qb + i);` : `if (info[5] == 1) {
        let cs = rope_cs_at(info[6], ${re.pair("i")});
        x = ${re.rotated("i", "ld_Q(qb + i)", `ld_Q(qb + ${re.partner("i")})`, "cs")};
      } else {
        x = ld_Q(qb + i);
      }`;
  // Pair k of a key: dimensions (k, k + half) for halves, (2k, 2k + 1) for adjacent.
  const pairDims = c.rope === "adjacent" ? ["2u * k", "2u * k + 1u"] : ["k", `k + ${half}u`];
  const score = re === undefined
    ? `for (var i = 0u; i < D; i++) {
          let kv = ld_K(kb + i);
          for (var r = 0u; r < G; r++) { s[r] += qs[r * D + i] * kv; }
        }`
    : `if (info[4] == 0) {
          for (var i = 0u; i < D; i++) {
            let kv = ld_K(kb + i);
            for (var r = 0u; r < G; r++) { s[r] += qs[r * D + i] * kv; }
          }
        } else {
          let rel = i32(token) - info[1];
          var p = info[3] + rel;
          if (info[4] == 2) { p = POS[token]; }
          if (info[4] == 3) { p = info[3] + rel - POS[token]; }
          for (var k = 0u; k < ${half}u; k++) {
            let i0 = ${pairDims[0]};
            let i1 = ${pairDims[1]};
            let cs = rope_cs_at(p, k);
            let x0 = ld_K(kb + i0);
            let x1 = ld_K(kb + i1);
            let k0 = x0 * cs.x - x1 * cs.y;
            let k1 = x0 * cs.y + x1 * cs.x;
            for (var r = 0u; r < G; r++) { s[r] += qs[r * D + i0] * k0 + qs[r * D + i1] * k1; }
          }
        }`;
  return /* wgsl */ `${enableF16(c.query, c.kv)}
${SPARSE_ATTEND_PARAMS.wgsl(0)}
${readOperand(1, "Q", c.query)}
${readOperand(2, "K", c.kv)}
${readOperand(3, "V", c.kv)}
@group(0) @binding(4) var<storage, read> META: array<i32>;
@group(0) @binding(5) var<storage, read_write> PO: array<f32>;
@group(0) @binding(6) var<storage, read_write> PL: array<u32>;
${ropeDecl}
${KV_ROW_FN}
${FLAT_WG_FN}
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
// Item fields 0..7, then the row group's t, headStart, rows, kvHead.
var<workgroup> wg_info: array<i32, 12>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let item = flat_wg(wid, nwg);
  if (item >= P.itemCount) { return; }
  if (lid < 12u) {
    let it = P.itemsBase + (P.itemOffset + item) * ${ITEM_FIELDS}u;
    if (lid < 8u) {
      wg_info[lid] = META[it + lid];
    } else {
      wg_info[lid] = META[u32(META[it]) * ${GROUP_FIELDS}u + lid - 8u];
    }
  }
  let info = workgroupUniformLoad(&wg_info);
  let t = u32(info[8]);
  let head0 = u32(info[9]);
  let nrows = u32(info[10]);
  let kh = u32(info[11]);
  let t0 = u32(info[1]);
  let t1 = u32(info[2]);
  for (var e = lid; e < G * D; e += WG) {
    let r = e / D;
    let i = e % D;
    var x: f32 = 0.0;
    if (r < nrows) {
      let qb = P.qBase + t * P.qTokenStride + (head0 + r) * D;
      ${loadQuery}
    }
    qs[e] = x;
  }
  var acc: array<f32, ${g * dpt}>;
  var m: f32 = ${NEG_BIG};
  var l: f32 = 0.0;
  workgroupBarrier();
  for (var tb = t0; tb < t1; tb += WG) {
    let n = min(WG, t1 - tb);
    if (lid < n) {
      let token = tb + lid;
      let row = kv_row(token - P.segStart, kh);
      vrow[lid] = P.valueBase + row;
      let kb = P.keyBase + row;
      // Zeroed explicitly: naga does not re-initialise a var declared in a loop.
      var s: array<f32, ${g}>;
      for (var r = 0u; r < G; r++) { s[r] = 0.0; }
      ${score}
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
  let slot = u32(info[7]);
  for (var r = 0u; r < G; r++) {
    if (r < nrows) {
      let o = slot * G + r;
      let lr = row_l[r];
      let inv = select(0.0, 1.0 / lr, lr > 0.0);
      for (var q = 0u; q < DPT; q++) {
        let i = lid + q * WG;
        if (i < D) { PO[o * D + i] = acc[r * DPT + q] * inv; }
      }
      if (lid == 0u) {
        PL[o] = select(${NEG_INF_BITS}u, bitcast<u32>(row_max[r] + log(lr)), lr > 0.0);
      }
    }
  }
}
`;
}
