// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * WGSL of the Landmark Attention decode path (private): landmark scoring at
 * the retrieval slot positions, the softmax-and-max aggregation of scores
 * into retrieval sets, and the grouped-softmax attend with one key tile per
 * block (inner softmax over the block's content, the landmark's logit as the
 * block's outer logit).
 *
 * Positions follow `LandmarkRetrieval` and `landmarkAttend`
 * (`attention/landmark.ts`); the host side is `gpu/landmark.ts`.
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

/** RoPE pairing of a landmark kernel, or `"none"`. */
export type LandmarkRopeKind = "none" | "halves" | "adjacent";

/** Compile-time configuration of {@linkcode landmarkScoreWgsl}. */
export interface LandmarkScoreConfig {
  [key: string]: string | number | boolean;
  /** Head dimension. */
  headDim: number;
  /** Query rows (tokens × group heads) per workgroup. */
  rows: number;
  /** Threads per workgroup = blocks per workgroup. */
  workgroupSize: number;
  /** How queries are read. */
  query: WgslStorage;
  /** How keys are read. */
  kv: WgslStorage;
  /** RoPE pairing. */
  rope: LandmarkRopeKind;
}

/** Uniforms of the landmark scoring kernel. */
export const LANDMARK_SCORE_PARAMS: ParamsLayout = new ParamsLayout([
  ["heads", "u32"],
  ["group", "u32"],
  ["tokens", "u32"],
  ["qBase", "u32"],
  ["qPos0", "i32"],
  ["nb", "u32"],
  ["recent0", "u32"],
  ["oldSlot", "i32"],
  ["origin", "i32"],
  ["blockLength", "u32"],
  ["blockSize", "u32"],
  ["rowChunks", "u32"],
  ["tiles", "u32"],
  ["segStart", "u32"],
  ["segEnd", "u32"],
  ["postRope", "u32"],
  ["scale", "f32"],
  ["pad0", "u32"],
  ["pad1", "u32"],
  ["pad2", "u32"],
  ...KV_LAYOUT_FIELDS,
]);

/** The rotation of pair `k` of key `x` by the angle of integer position `p` (a `vec2`). */
function pairDims(rope: "halves" | "adjacent", half: number): [string, string] {
  return rope === "adjacent" ? ["2u * k", "2u * k + 1u"] : ["k", `k + ${half}u`];
}

/**
 * Landmark logits of memory blocks: workgroup `w` serves KV head
 * `kh = w / (rowChunks · tiles)`, a chunk of `rows` query rows (row
 * `r = t · group + g`: token `t`, head `kh · group + g`) held in workgroup
 * memory rotated to their positions `qPos0 + t`, and a tile of
 * `workgroupSize` blocks, one per thread. Block `b`'s landmark (cache index
 * `b · Bℓ + blockSize`) is read from the store once, rotated on read by
 * `slot − pos` (post-RoPE store) or to `slot` (pre-RoPE), where `slot` is
 * the landmark's scoring position: `oldSlot` for blocks below `recent0`,
 * `origin + b · Bℓ + blockSize` otherwise; so
 * `z = scale · ⟨R(qpos) q, R(slot) ℓ⟩`, as `LandmarkRetrieval` scores.
 * Landmarks outside the segment `[segStart, segEnd)` are left to the
 * dispatch of their own segment.
 *
 * Bindings: 0 uniforms, 1 queries, 2 keys (segment), 3 scores f32
 * `[tokens, heads, nb]`; with RoPE 4 positions (i32), 5 RoPE tables.
 */
export function landmarkScoreWgsl(c: LandmarkScoreConfig): string {
  const d = c.headDim, g = c.rows, wg = c.workgroupSize;
  const half = d >> 1;
  const hasRope = c.rope !== "none";
  const re = hasRope ? ropeElement(c.rope as "halves" | "adjacent", half) : undefined;
  const ropeDecl = hasRope
    ? `@group(0) @binding(4) var<storage, read> POS: array<i32>;\n${ropeTables(5, half)}`
    : "";
  const loadQuery = re === undefined ? `x = ld_Q(qb + i);` : `{
        let cs = rope_cs_at(P.qPos0 + i32(t), ${re.pair("i")});
        x = ${re.rotated("i", "ld_Q(qb + i)", `ld_Q(qb + ${re.partner("i")})`, "cs")};
      }`;
  let score: string;
  if (!hasRope) {
    score = `for (var i = 0u; i < D; i++) {
      let kv = ld_K(kb + i);
      for (var r = 0u; r < G; r++) { s[r] += qs[r * D + i] * kv; }
    }`;
  } else {
    const [i0, i1] = pairDims(c.rope as "halves" | "adjacent", half);
    score = `var slot = P.origin + i32(lm);
    if (b < P.recent0) { slot = P.oldSlot; }
    var p = slot;
    if (P.postRope == 1u) { p = slot - POS[lm]; }
    for (var k = 0u; k < ${half}u; k++) {
      let i0 = ${i0};
      let i1 = ${i1};
      let cs = rope_cs_at(p, k);
      let x0 = ld_K(kb + i0);
      let x1 = ld_K(kb + i1);
      let k0 = x0 * cs.x - x1 * cs.y;
      let k1 = x0 * cs.y + x1 * cs.x;
      for (var r = 0u; r < G; r++) { s[r] += qs[r * D + i0] * k0 + qs[r * D + i1] * k1; }
    }`;
  }
  return /* wgsl */ `${enableF16(c.query, c.kv)}
${LANDMARK_SCORE_PARAMS.wgsl(0)}
${readOperand(1, "Q", c.query)}
${readOperand(2, "K", c.kv)}
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;
${ropeDecl}
${KV_ROW_FN}
${FLAT_WG_FN}
const D: u32 = ${d}u;
const G: u32 = ${g}u;
const WG: u32 = ${wg}u;

var<workgroup> qs: array<f32, ${g * d}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let w = flat_wg(wid, nwg);
  let per_kh = P.rowChunks * P.tiles;
  let kh = w / per_kh;
  if (kh >= P.heads / P.group) { return; }
  let rc = (w / P.tiles) % P.rowChunks;
  let tile = w % P.tiles;
  let r0 = rc * G;
  let rows = P.tokens * P.group;
  for (var e = lid; e < G * D; e += WG) {
    let rr = r0 + e / D;
    let i = e % D;
    var x: f32 = 0.0;
    if (rr < rows) {
      let t = rr / P.group;
      let qb = P.qBase + (t * P.heads + kh * P.group + rr % P.group) * D;
      ${loadQuery}
    }
    qs[e] = x;
  }
  workgroupBarrier();
  let b = tile * WG + lid;
  if (b >= P.nb) { return; }
  let lm = b * P.blockLength + P.blockSize;
  if (lm < P.segStart || lm >= P.segEnd) { return; }
  let kb = P.keyBase + kv_row(lm - P.segStart, kh);
  var s: array<f32, ${g}>;
  for (var r = 0u; r < G; r++) { s[r] = 0.0; }
  ${score}
  for (var r = 0u; r < G; r++) {
    let rr = r0 + r;
    if (rr < rows) {
      let t = rr / P.group;
      OUT[(t * P.heads + kh * P.group + rr % P.group) * P.nb + b] = s[r] * P.scale;
    }
  }
}
`;
}

/** Compile-time configuration of {@linkcode landmarkAggregateWgsl}. */
export interface LandmarkAggregateConfig {
  [key: string]: string | number | boolean;
  /** Threads per workgroup (a power of two). */
  workgroupSize: number;
}

/** Uniforms of the aggregation kernel. */
export const LANDMARK_AGGREGATE_PARAMS: ParamsLayout = new ParamsLayout([
  ["nb", "u32"],
  ["heads", "u32"],
  ["group", "u32"],
  ["tokens", "u32"],
  ["sets", "u32"],
  ["headMode", "u32"],
  ["overTokens", "u32"],
  ["outRows", "u32"],
]);

/**
 * Retrieval-set scores from landmark logits: workgroup `o` writes row `o`
 * of `OUT [outRows, nb]` as the element-wise maximum, over its member rows
 * of `SC [tokens, heads, nb]`, of each row's softmax over the `nb` blocks.
 * Row `o = tt · sets + k`; member tokens are every token (`overTokens`) or
 * `tt`; member heads are the KV group `k` (`headMode 0`), head `k` (1) or
 * every head (2).
 *
 * Bindings: 0 uniforms, 1 logits, 2 result.
 */
export function landmarkAggregateWgsl(c: LandmarkAggregateConfig): string {
  const wg = c.workgroupSize;
  return /* wgsl */ `${LANDMARK_AGGREGATE_PARAMS.wgsl(0)}
@group(0) @binding(1) var<storage, read> SC: array<f32>;
@group(0) @binding(2) var<storage, read_write> OUT: array<f32>;
${FLAT_WG_FN}
const WG: u32 = ${wg}u;
var<workgroup> red: array<f32, ${wg}>;

fn reduce(lid: u32, take_max: bool) -> f32 {
  for (var w = WG / 2u; w > 0u; w = w / 2u) {
    workgroupBarrier();
    if (lid < w) {
      if (take_max) { red[lid] = max(red[lid], red[lid + w]); }
      else { red[lid] = red[lid] + red[lid + w]; }
    }
  }
  workgroupBarrier();
  let v = red[0];
  workgroupBarrier();
  return v;
}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let o = flat_wg(wid, nwg);
  if (o >= P.outRows) { return; }
  let tt = o / P.sets;
  let k = o % P.sets;
  var t0 = tt;
  var t1 = tt + 1u;
  if (P.overTokens == 1u) { t0 = 0u; t1 = P.tokens; }
  var h0 = k * P.group;
  var h1 = h0 + P.group;
  if (P.headMode == 1u) { h0 = k; h1 = k + 1u; }
  if (P.headMode == 2u) { h0 = 0u; h1 = P.heads; }
  let ob = o * P.nb;
  var first = true;
  for (var t = t0; t < t1; t++) {
    for (var h = h0; h < h1; h++) {
      let rb = (t * P.heads + h) * P.nb;
      var mx: f32 = ${NEG_BIG};
      for (var b = lid; b < P.nb; b += WG) { mx = max(mx, SC[rb + b]); }
      red[lid] = mx;
      let m = reduce(lid, true);
      var sm: f32 = 0.0;
      for (var b = lid; b < P.nb; b += WG) { sm += exp(SC[rb + b] - m); }
      red[lid] = sm;
      let total = reduce(lid, false);
      for (var b = lid; b < P.nb; b += WG) {
        let p = exp(SC[rb + b] - m) / total;
        if (first) { OUT[ob + b] = p; } else { OUT[ob + b] = max(OUT[ob + b], p); }
      }
      first = false;
    }
  }
}
`;
}

/** Compile-time configuration of {@linkcode landmarkAttendWgsl}. */
export interface LandmarkAttendConfig {
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
  /** RoPE pairing. */
  rope: LandmarkRopeKind;
}

/** i32 fields per row group: t, headStart, rows, kvHead, setRow, queryAt, (2 unused). */
export const LANDMARK_GROUP_FIELDS = 8;
/**
 * i32 fields per work item (one block or the own section, for one row
 * group): rowGroup, kind, a, b, seenBase, slot, (2 unused). Kinds:
 * 0 retrieved block `a` of the row group's set (its block index read from
 * the top-k result, its slot computed), 1 gated local block `a` seen from
 * `seenBase`, 2 ungated cache indices `[a, b)` seen from `seenBase`.
 */
export const LANDMARK_ITEM_FIELDS = 8;

/** Uniforms of the grouped attend kernel. */
export const LANDMARK_ATTEND_PARAMS: ParamsLayout = new ParamsLayout([
  ["heads", "u32"],
  ["qBase", "u32"],
  ["qTokenStride", "u32"],
  ["itemsBase", "u32"],
  ["itemCount", "u32"],
  ["scale", "f32"],
  ["blockSize", "u32"],
  ["blockLength", "u32"],
  ["nb", "u32"],
  ["k", "u32"],
  ["prefix", "i32"],
  ["ropeMode", "u32"],
  ["segStart", "u32"],
  ["seg2Start", "u32"],
  ["key2Base", "u32"],
  ["value2Base", "u32"],
  ...KV_LAYOUT_FIELDS,
]);

/** Workgroup memory of the attend kernel for a config, in bytes. */
export function landmarkAttendWorkgroupBytes(headDim: number, rows: number, wg: number): number {
  return 4 * (rows * headDim + rows * wg + 4 * rows + 2 * wg + 24);
}

/**
 * Grouped attend, one workgroup per work item: the item's keys (one block's
 * content, at most `blockSize`, or the own section) are one key tile loop
 * (the sparse attend kernel's), giving the block's inner softmax state; a
 * gated item then replaces its `lse` by the landmark's logit, so the planned
 * log-sum-exp merge of a row's items is exactly the grouped softmax
 * (`landmarkAttend`'s rule: outer softmax over landmarks and the own
 * section, inner softmax per block, landmark values never mixed in).
 *
 * Items whose first key is outside the dispatch's segment are skipped; a
 * block may run into the next segment, bound as the second K/V pair
 * (`seg2Start` its first token). RoPE modes (`ropeMode`): 0 none; 1
 * post-RoPE keys at consecutive positions: the query rotated to
 * `queryAt − (seen − pos)`, keys as stored; 2 post-RoPE keys with gaps:
 * each key rotated by `seen − pos`; 3 pre-RoPE keys: each rotated to its
 * seen position, the query to `queryAt`. The landmark is rotated like a
 * content key at offset `blockSize` of its block.
 *
 * Bindings: 0 uniforms, 1 queries, 2 keys, 3 values, 4 keys (next segment),
 * 5 values (next segment), 6 meta (row groups then items), 7 top-k indices
 * `[sets, k]` (i32), 8 partial `out`, 9 partial `lse` (u32 view); with RoPE
 * also 10 positions (i32), 11 RoPE tables.
 */
export function landmarkAttendWgsl(c: LandmarkAttendConfig): string {
  const d = c.headDim, g = c.rows, wg = c.workgroupSize;
  const dpt = Math.ceil(d / wg);
  const half = d >> 1;
  const hasRope = c.rope !== "none";
  const re = hasRope ? ropeElement(c.rope as "halves" | "adjacent", half) : undefined;
  const ropeDecl = hasRope
    ? `@group(0) @binding(10) var<storage, read> POS: array<i32>;\n${ropeTables(11, half)}`
    : "";
  const loadQuery = re === undefined ? `x = ld_Q(qb + i);` : `if (P.ropeMode != 0u) {
        let cs = rope_cs_at(blk[4], ${re.pair("i")});
        x = ${re.rotated("i", "ld_Q(qb + i)", `ld_Q(qb + ${re.partner("i")})`, "cs")};
      } else {
        x = ld_Q(qb + i);
      }`;
  // Dot of the key at cache index `tok` (seen at `seen`) with every row, into s[].
  const dot = (tok: string, seen: string): string => {
    const plain = `for (var i = 0u; i < D; i++) {
          let kv = k_at(${tok}, kh, i);
          for (var r = 0u; r < G; r++) { s[r] += qs[r * D + i] * kv; }
        }`;
    if (!hasRope) return plain;
    const [i0, i1] = pairDims(c.rope as "halves" | "adjacent", half);
    return `if (P.ropeMode <= 1u) {
          ${plain}
        } else {
          var p = ${seen};
          if (P.ropeMode == 2u) { p = p - POS[${tok}]; }
          for (var k = 0u; k < ${half}u; k++) {
            let i0 = ${i0};
            let i1 = ${i1};
            let cs = rope_cs_at(p, k);
            let x0 = k_at(${tok}, kh, i0);
            let x1 = k_at(${tok}, kh, i1);
            let k0 = x0 * cs.x - x1 * cs.y;
            let k1 = x0 * cs.y + x1 * cs.x;
            for (var r = 0u; r < G; r++) { s[r] += qs[r * D + i0] * k0 + qs[r * D + i1] * k1; }
          }
        }`;
  };
  const qPosOf = hasRope ? `if (P.ropeMode == 1u) { q_at = q_at - (sb - POS[s0]); }` : "";
  return /* wgsl */ `${enableF16(c.query, c.kv)}
${LANDMARK_ATTEND_PARAMS.wgsl(0)}
${readOperand(1, "Q", c.query)}
${readOperand(2, "K", c.kv)}
${readOperand(3, "V", c.kv)}
${readOperand(4, "K2", c.kv)}
${readOperand(5, "V2", c.kv)}
@group(0) @binding(6) var<storage, read> META: array<i32>;
@group(0) @binding(7) var<storage, read> IDX: array<i32>;
@group(0) @binding(8) var<storage, read_write> PO: array<f32>;
@group(0) @binding(9) var<storage, read_write> PL: array<u32>;
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
var<workgroup> row_z: array<f32, ${g}>;
var<workgroup> vrow: array<u32, ${wg}>;
var<workgroup> vhi: array<u32, ${wg}>;
// Item fields 0..7, then the row group's fields 0..7.
var<workgroup> wg_info: array<i32, 16>;
// Resolved item: first key, end, seen base, gate (-1 none), query rotation position.
var<workgroup> wg_blk: array<i32, 8>;

fn k_at(tok: u32, kh: u32, i: u32) -> f32 {
  if (tok < P.seg2Start) { return ld_K(P.keyBase + kv_row(tok - P.segStart, kh) + i); }
  return ld_K2(P.key2Base + kv_row(tok - P.seg2Start, kh) + i);
}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let item = flat_wg(wid, nwg);
  if (item >= P.itemCount) { return; }
  if (lid < 16u) {
    let it = P.itemsBase + item * ${LANDMARK_ITEM_FIELDS}u;
    if (lid < 8u) {
      wg_info[lid] = META[it + lid];
    } else {
      wg_info[lid] = META[u32(META[it]) * ${LANDMARK_GROUP_FIELDS}u + lid - 8u];
    }
  }
  let info = workgroupUniformLoad(&wg_info);
  if (lid == 0u) {
    let bl = i32(P.blockLength);
    let bs = i32(P.blockSize);
    var s0 = info[2];
    var e0 = info[3];
    var sb = info[4];
    var gate = -1;
    if (info[1] == 0) {
      let c = IDX[u32(info[12]) * P.k + u32(info[2])];
      var slot = info[2];
      if (u32(c) + P.k >= P.nb) { slot = slot + 1; }
      s0 = c * bl;
      sb = P.prefix + slot * bl;
    }
    if (info[1] != 2) {
      if (info[1] == 1) { s0 = info[2] * bl; }
      e0 = s0 + bs;
      gate = s0 + bs;
    }
    var q_at = info[13];
    ${qPosOf}
    wg_blk[0] = s0;
    wg_blk[1] = e0;
    wg_blk[2] = sb;
    wg_blk[3] = gate;
    wg_blk[4] = q_at;
  }
  let blk = workgroupUniformLoad(&wg_blk);
  let t0 = u32(blk[0]);
  let t1 = u32(blk[1]);
  if (t0 < P.segStart || t0 >= P.seg2Start) { return; }
  let t = u32(info[8]);
  let head0 = u32(info[9]);
  let nrows = u32(info[10]);
  let kh = u32(info[11]);
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
  for (var z = 0u; z < ${g * dpt}u; z++) { acc[z] = 0.0; }
  var m: f32 = ${NEG_BIG};
  var l: f32 = 0.0;
  workgroupBarrier();
  for (var tb = t0; tb < t1; tb += WG) {
    let n = min(WG, t1 - tb);
    if (lid < n) {
      let token = tb + lid;
      if (token < P.seg2Start) {
        vrow[lid] = P.valueBase + kv_row(token - P.segStart, kh);
        vhi[lid] = 0u;
      } else {
        vrow[lid] = P.value2Base + kv_row(token - P.seg2Start, kh);
        vhi[lid] = 1u;
      }
      // Zeroed explicitly: naga does not re-initialise a var declared in a loop.
      var s: array<f32, ${g}>;
      for (var r = 0u; r < G; r++) { s[r] = 0.0; }
      ${dot("token", "blk[2] + i32(token - t0)")}
      for (var r = 0u; r < G; r++) { ps[r * WG + lid] = s[r] * P.scale; }
    }
    workgroupBarrier();
    ${
    onlineSoftmaxTile(
      "var v: f32; if (vhi[j] == 0u) { v = ld_V(vrow[j] + i); } else { v = ld_V2(vrow[j] + i); }",
    )
  }
    workgroupBarrier();
  }
  if (blk[3] >= 0 && lid == 0u) {
    // The landmark's logit for every row (the block's outer logit).
    let gate = u32(blk[3]);
    var s: array<f32, ${g}>;
    for (var r = 0u; r < G; r++) { s[r] = 0.0; }
    ${dot("gate", "blk[2] + i32(gate - t0)")}
    for (var r = 0u; r < G; r++) { row_z[r] = s[r] * P.scale; }
  }
  if (lid < G) {
    row_l[lid] = l;
    row_max[lid] = m;
  }
  workgroupBarrier();
  let slot = u32(info[5]);
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
        var bits = select(${NEG_INF_BITS}u, bitcast<u32>(row_max[r] + log(lr)), lr > 0.0);
        if (blk[3] >= 0) { bits = bitcast<u32>(row_z[r]); }
        PL[o] = bits;
      }
    }
  }
}
`;
}
