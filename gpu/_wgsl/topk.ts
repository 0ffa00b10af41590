// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * WGSL of row-wise top-k (private): radix select of the k-th largest key in
 * four 8-bit passes, a deterministic gather, and a bitonic sort of the k
 * winners in workgroup memory. One workgroup per row.
 *
 * @module
 */

import { FLAT_WG_FN, ParamsLayout } from "./common.ts";

/** Compile-time configuration of {@linkcode topKWgsl}. */
export interface TopKConfig {
  [key: string]: string | number | boolean;
  /** Threads per workgroup (256: one histogram bin each). */
  workgroupSize: number;
  /** Sort size: `k` rounded up to a power of two (at most 1024). */
  sortSize: number;
  /** Output order: by score (descending, ties by lower index) or by index (ascending). */
  order: "score" | "index";
}

/** Uniforms of the top-k kernel. */
export const TOPK_PARAMS: ParamsLayout = new ParamsLayout([
  ["rows", "u32"],
  ["n", "u32"],
  ["k", "u32"],
  ["base", "u32"],
  ["rowStride", "u32"],
  ["pad0", "u32"],
  ["pad1", "u32"],
  ["pad2", "u32"],
]);

/**
 * Scores are ranked by an order-preserving map of their f32 bits to u32
 * (`~bits` for negatives, `bits | 2^31` otherwise; NaN maps to 0, below
 * −∞), so the ranking is IEEE's total order with NaN lowest and no float
 * comparison ever sees a NaN.
 *
 * 1. Radix select: four passes build a 256-bin histogram (workgroup atomics)
 *    of the next 8 bits among keys matching the prefix found so far; thread 0
 *    walks it from the top to fix the k-th largest key `T` and how many keys
 *    equal to `T` are still needed.
 * 2. Gather: each thread owns a contiguous chunk of the row; exclusive prefix
 *    sums of its counts of keys `> T` and `== T` give every winner its slot,
 *    and the keys equal to `T` are taken in index order (lowest index wins ties).
 * 3. Bitonic sort of the `sortSize` slots (padding sorts last), then the
 *    first `k` indices and their scores are written.
 *
 * Bindings: 0 uniforms, 1 scores f32, 2 indices i32 `[rows, k]`, 3 values f32 `[rows, k]`.
 */
export function topKWgsl(c: TopKConfig): string {
  const wg = c.workgroupSize, p = c.sortSize;
  const before = c.order === "score" ? "(ka > kb) || (ka == kb && ia < ib)" : "ia < ib";
  return /* wgsl */ `${TOPK_PARAMS.wgsl(0)}
@group(0) @binding(1) var<storage, read> S: array<u32>;
@group(0) @binding(2) var<storage, read_write> OUT_I: array<i32>;
@group(0) @binding(3) var<storage, read_write> OUT_V: array<u32>;
${FLAT_WG_FN}
const WG: u32 = ${wg}u;
const PS: u32 = ${p}u;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> cnt_g: array<u32, ${wg}>;
var<workgroup> cnt_e: array<u32, ${wg}>;
var<workgroup> sel_key: array<u32, ${p}>;
var<workgroup> sel_idx: array<u32, ${p}>;
var<workgroup> wg_prefix: u32;
var<workgroup> wg_want: u32;

fn key_of(bits: u32) -> u32 {
  if ((bits & 0x7fffffffu) > 0x7f800000u) { return 0u; }
  if ((bits & 0x80000000u) != 0u) { return ~bits; }
  return bits | 0x80000000u;
}

fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
  return ${before};
}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = flat_wg(wid, nwg);
  if (row >= P.rows) { return; }
  let base = P.base + row * P.rowStride;
  let n = P.n;
  let k = P.k;
  if (lid == 0u) {
    wg_prefix = 0u;
    wg_want = k;
  }
  var mask = 0u;
  for (var round = 0u; round < 4u; round++) {
    let shift = 24u - 8u * round;
    for (var b = lid; b < 256u; b += WG) { atomicStore(&hist[b], 0u); }
    workgroupBarrier();
    let prefix = wg_prefix;
    for (var e = lid; e < n; e += WG) {
      let kk = key_of(S[base + e]);
      if ((kk & mask) == prefix) { atomicAdd(&hist[(kk >> shift) & 255u], 1u); }
    }
    workgroupBarrier();
    if (lid == 0u) {
      var cum = 0u;
      let want = wg_want;
      for (var b = 255i; b >= 0i; b--) {
        let c = atomicLoad(&hist[u32(b)]);
        if (cum + c >= want) {
          wg_prefix = prefix | (u32(b) << shift);
          wg_want = want - cum;
          break;
        }
        cum += c;
      }
    }
    mask |= 255u << shift;
    workgroupBarrier();
  }
  let thr = wg_prefix;
  let need_eq = wg_want;
  let chunk = (n + WG - 1u) / WG;
  let lo = min(n, lid * chunk);
  let hi = min(n, lo + chunk);
  var g = 0u;
  var eq = 0u;
  for (var e = lo; e < hi; e++) {
    let kk = key_of(S[base + e]);
    if (kk > thr) { g++; } else if (kk == thr) { eq++; }
  }
  cnt_g[lid] = g;
  cnt_e[lid] = eq;
  workgroupBarrier();
  if (lid == 0u) {
    var ag = 0u;
    var ae = 0u;
    for (var i = 0u; i < WG; i++) {
      let tg = cnt_g[i];
      cnt_g[i] = ag;
      ag += tg;
      let te = cnt_e[i];
      cnt_e[i] = ae;
      ae += te;
    }
  }
  workgroupBarrier();
  var pg = cnt_g[lid];
  var pe = cnt_e[lid];
  let first_eq = k - need_eq;
  for (var e = lo; e < hi; e++) {
    let kk = key_of(S[base + e]);
    if (kk > thr) {
      sel_key[pg] = kk;
      sel_idx[pg] = e;
      pg++;
    } else if (kk == thr) {
      if (pe < need_eq) {
        sel_key[first_eq + pe] = kk;
        sel_idx[first_eq + pe] = e;
      }
      pe++;
    }
  }
  for (var i = k + lid; i < PS; i += WG) {
    sel_key[i] = 0u;
    sel_idx[i] = 0xffffffffu;
  }
  workgroupBarrier();
  for (var size = 2u; size <= PS; size <<= 1u) {
    for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
      for (var t = lid; t < PS / 2u; t += WG) {
        let i = 2u * stride * (t / stride) + t % stride;
        let j = i + stride;
        let ka = sel_key[i];
        let ia = sel_idx[i];
        let kb = sel_key[j];
        let ib = sel_idx[j];
        let up = (i & size) == 0u;
        if (select(before(ka, ia, kb, ib), before(kb, ib, ka, ia), up)) {
          sel_key[i] = kb;
          sel_idx[i] = ib;
          sel_key[j] = ka;
          sel_idx[j] = ia;
        }
      }
      workgroupBarrier();
    }
  }
  for (var i = lid; i < k; i += WG) {
    let idx = sel_idx[i];
    OUT_I[row * k + i] = i32(idx);
    OUT_V[row * k + i] = S[base + idx];
  }
}
`;
}
