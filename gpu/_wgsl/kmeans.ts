// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * WGSL of the k-means steps (private): the assignment step (nearest centroid
 * per point, lowest index on ties) and the per-cluster sums of the update
 * step.
 *
 * @module
 */

import { enableF16, FLAT_WG_FN, ParamsLayout, readOperand, type WgslStorage } from "./common.ts";

/** Elements of a point each thread holds in registers at a time. */
export const KMEANS_CHUNK = 16;

/** Most centroids per tile of the assignment kernel (running sums per thread). */
const MAX_TILE = 32;

/**
 * Centroids per tile of {@linkcode kmeansAssignWgsl}: as many zero-padded rows
 * as fit `budget` bytes of workgroup memory, at most 32.
 */
export function kmeansAssignTile(headDim: number, budget: number): number {
  const padded = Math.ceil(headDim / KMEANS_CHUNK) * KMEANS_CHUNK;
  return Math.max(1, Math.min(MAX_TILE, Math.floor(budget / (4 * padded))));
}

/** Compile-time configuration of {@linkcode kmeansAssignWgsl}. */
export interface KmeansAssignConfig {
  [key: string]: string | number | boolean;
  /** Elements per point. */
  headDim: number;
  /** Threads per workgroup = points per workgroup. */
  workgroupSize: number;
  /** Centroids held in workgroup memory at a time (`tile · ⌈headDim/16⌉·16 · 4` bytes). */
  tile: number;
  /** Scale every point to unit length first (`"cosine"` geometry). */
  normalizePoints: boolean;
  /** Scale every centroid to unit length first. */
  normalizeCentroids: boolean;
  /** How points are read. */
  points: WgslStorage;
  /** How centroids are read. */
  centroids: WgslStorage;
}

/** Uniforms of the assignment kernel. */
export const KMEANS_ASSIGN_PARAMS: ParamsLayout = new ParamsLayout([
  ["n", "u32"],
  ["clusters", "u32"],
  ["pointBase", "u32"],
  ["centroidBase", "u32"],
]);

/**
 * Thread `i` of the flat grid assigns point `i`: `x = p · inv` with
 * `inv = 1 / |p|` (cosine; 0 for a zero point, as `F.normalize`) or 1, then
 * the centroid `c` minimising `Σ_e (x_e − c_e)²`, scanned in ascending order
 * with a strict `<` so an exact tie keeps the lowest index.
 *
 * The centroids stream through workgroup memory `tile` at a time, each row
 * zero-padded to a multiple of 16 elements (every thread of the workgroup
 * takes part in the loads, past-the-end threads included, so the barriers
 * stay uniform; with `normalizeCentroids` each row is scaled to unit length
 * in workgroup memory after its load). Against a tile, a thread reads its
 * point 16 elements at a time into registers and adds each chunk's squared
 * differences to `tile` running sums, so the point is read from memory once
 * per tile rather than once per centroid; every sum still runs over the
 * elements in order.
 *
 * Bindings: 0 uniforms, 1 points `[n, D]`, 2 centroids `[clusters, D]`,
 * 3 labels i32 `[n]`, 4 squared distances f32 `[n]`, 5 point scales f32 `[n]`
 * (`inv`, read by the sums kernel).
 */
export function kmeansAssignWgsl(c: KmeansAssignConfig): string {
  const d = c.headDim, wg = c.workgroupSize, tile = c.tile, k = KMEANS_CHUNK;
  const dp = Math.ceil(d / k) * k;
  return /* wgsl */ `${enableF16(c.points, c.centroids)}
${KMEANS_ASSIGN_PARAMS.wgsl(0)}
${readOperand(1, "X", c.points)}
${readOperand(2, "C", c.centroids)}
@group(0) @binding(3) var<storage, read_write> LABEL: array<i32>;
@group(0) @binding(4) var<storage, read_write> DIST: array<f32>;
@group(0) @binding(5) var<storage, read_write> INV: array<f32>;
${FLAT_WG_FN}
const D: u32 = ${d}u;
const DP: u32 = ${dp}u;
const WG: u32 = ${wg}u;
const T: u32 = ${tile}u;
const K: u32 = ${k}u;

/** Element \`e\` of the scaled point at \`xb\`, 0 past the end. */
fn xe(xb: u32, e: u32, inv: f32) -> f32 {
  if (e < D) { return ld_X(xb + e) * inv; }
  return 0.0;
}

var<workgroup> cs: array<vec4<f32>, ${(tile * dp) / 4}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flat_wg(wid, nwg) * WG + lid;
  let live = i < P.n;
  let xb = P.pointBase + min(i, P.n - 1u) * D;
  var inv: f32 = 1.0;
  if (${c.normalizePoints}) {
    var s: f32 = 0.0;
    for (var e = 0u; e < D; e++) {
      let v = ld_X(xb + e);
      s += v * v;
    }
    inv = select(0.0, 1.0 / sqrt(s), s > 0.0);
  }
  var best: f32 = 0.0;
  var bestC: i32 = -1;
  var acc: array<f32, ${tile}>;
  for (var c0 = 0u; c0 < P.clusters; c0 += T) {
    let cnt = min(T, P.clusters - c0);
    workgroupBarrier();
    for (var e = lid; e < T * DP; e += WG) {
      let t = e / DP;
      let el = e % DP;
      var v: f32 = 0.0;
      if (t < cnt && el < D) { v = ld_C(P.centroidBase + (c0 + t) * D + el); }
      cs[e / 4u][e % 4u] = v;
    }
    workgroupBarrier();
    if (${c.normalizeCentroids}) {
      for (var t = lid; t < cnt; t += WG) {
        var s: f32 = 0.0;
        for (var e = 0u; e < DP / 4u; e++) { s += dot(cs[t * DP / 4u + e], cs[t * DP / 4u + e]); }
        let ci = select(0.0, 1.0 / sqrt(s), s > 0.0);
        for (var e = 0u; e < DP / 4u; e++) { cs[t * DP / 4u + e] = cs[t * DP / 4u + e] * ci; }
      }
      workgroupBarrier();
    }
    for (var t = 0u; t < T; t++) { acc[t] = 0.0; }
    for (var e0 = 0u; e0 < DP; e0 += K) {
${
    [0, 1, 2, 3].map((q) =>
      `      let x${q} = vec4<f32>(${
        [0, 1, 2, 3].map((r) => `xe(xb, e0 + ${4 * q + r}u, inv)`).join(", ")
      });`
    ).join("\n")
  }
      for (var t = 0u; t < cnt; t++) {
        let b = (t * DP + e0) / 4u;
        let u0 = x0 - cs[b];
        let u1 = x1 - cs[b + 1u];
        let u2 = x2 - cs[b + 2u];
        let u3 = x3 - cs[b + 3u];
        acc[t] += (dot(u0, u0) + dot(u1, u1)) + (dot(u2, u2) + dot(u3, u3));
      }
    }
    for (var t = 0u; t < cnt; t++) {
      if (bestC < 0 || acc[t] < best) {
        best = acc[t];
        bestC = i32(c0 + t);
      }
    }
  }
  if (live) {
    LABEL[i] = bestC;
    DIST[i] = best;
    INV[i] = inv;
  }
}
`;
}

/** Compile-time configuration of {@linkcode kmeansSumsWgsl}. */
export interface KmeansSumsConfig {
  [key: string]: string | number | boolean;
  /** Threads per workgroup = elements per workgroup. */
  workgroupSize: number;
  /** How points are read. */
  points: WgslStorage;
}

/** Uniforms of the sums kernel. */
export const KMEANS_SUMS_PARAMS: ParamsLayout = new ParamsLayout([
  ["n", "u32"],
  ["clusters", "u32"],
  ["headDim", "u32"],
  ["pointBase", "u32"],
  ["dimBlocks", "u32"],
  ["pad0", "u32"],
  ["pad1", "u32"],
  ["pad2", "u32"],
]);

/**
 * Workgroup `w = c · dimBlocks + b` of the flat grid sums, for cluster `c`,
 * elements `b·WG … b·WG + WG − 1` of the scaled points `x_i = p_i · inv_i`
 * whose label is `c`, in ascending point order (deterministic), and thread 0
 * of block 0 counts them. The labels are scanned `WG` at a time (one per
 * thread); a workgroup prefix sum compacts the members of the chunk, in
 * order, into workgroup memory, and then every thread adds its element of
 * each member.
 *
 * Bindings: 0 uniforms, 1 points `[n, D]`, 2 labels i32 `[n]`, 3 point scales
 * f32 `[n]`, 4 sums f32 `[clusters, D]`, 5 counts i32 `[clusters]`.
 */
export function kmeansSumsWgsl(c: KmeansSumsConfig): string {
  const wg = c.workgroupSize;
  return /* wgsl */ `${enableF16(c.points)}
${KMEANS_SUMS_PARAMS.wgsl(0)}
${readOperand(1, "X", c.points)}
@group(0) @binding(2) var<storage, read> LABEL: array<i32>;
@group(0) @binding(3) var<storage, read> INV: array<f32>;
@group(0) @binding(4) var<storage, read_write> SUM: array<f32>;
@group(0) @binding(5) var<storage, read_write> COUNT: array<i32>;
${FLAT_WG_FN}
const WG: u32 = ${wg}u;
var<workgroup> sc: array<u32, ${wg}>;
var<workgroup> members: array<u32, ${wg}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let w = flat_wg(wid, nwg);
  let c = w / P.dimBlocks;
  if (c >= P.clusters) { return; }
  let e = (w % P.dimBlocks) * WG + lid;
  let d = P.headDim;
  let ee = min(e, d - 1u);
  var s: f32 = 0.0;
  var k: u32 = 0u;
  for (var i0 = 0u; i0 < P.n; i0 += WG) {
    let i = i0 + lid;
    var flag: u32 = 0u;
    if (i < P.n && LABEL[i] == i32(c)) { flag = 1u; }
    workgroupBarrier();
    sc[lid] = flag;
    for (var off = 1u; off < WG; off = off * 2u) {
      workgroupBarrier();
      var v = sc[lid];
      if (lid >= off) { v += sc[lid - off]; }
      workgroupBarrier();
      sc[lid] = v;
    }
    workgroupBarrier();
    if (flag == 1u) { members[sc[lid] - 1u] = i; }
    let m = sc[WG - 1u];
    workgroupBarrier();
    for (var t = 0u; t < m; t++) {
      let j = members[t];
      s += ld_X(P.pointBase + j * d + ee) * INV[j];
    }
    k += m;
  }
  if (e < d) { SUM[c * d + e] = s; }
  if (e == 0u) { COUNT[c] = i32(k); }
}
`;
}
