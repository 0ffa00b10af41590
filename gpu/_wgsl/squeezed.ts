// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * WGSL of Squeezed Attention's online lookup (private): the estimated
 * per-key softmax mass of every cluster, the kept-cluster mask (threshold or
 * top-k budget), and the stream compaction of the kept keys into sorted spans.
 *
 * A *unit* is one selection: the query rows whose mass is averaged and who
 * share one key set — `tokensPerUnit` query tokens (all of a call, or one)
 * × `rowsPerUnit` query heads (the GQA group, or one) of one KV head.
 *
 * @module
 */

import {
  enableF16,
  FLAT_WG_FN,
  NEG_BIG,
  ParamsLayout,
  readOperand,
  ropeElement,
  type WgslStorage,
} from "./common.ts";

/** Threads per workgroup of the lookup kernels (a power of two). */
export const SQUEEZED_WORKGROUP = 256;

/** Fields every Squeezed kernel reads to place a unit. */
const UNIT_FIELDS = [
  ["units", "u32"],
  ["clusters", "u32"],
  ["heads", "u32"],
  ["group", "u32"],
  ["rowsPerUnit", "u32"],
  ["unitsPerToken", "u32"],
  ["tokensPerUnit", "u32"],
  ["coarseClusters", "u32"],
] as const;

/** `unit_kv(u)`: the KV head of unit `u`; `unit_h0(u)`, `unit_t0(u)`: its first query head and token. */
const UNIT_FNS = `fn unit_h0(u: u32) -> u32 { return (u % P.unitsPerToken) * P.rowsPerUnit; }
fn unit_t0(u: u32) -> u32 { return (u / P.unitsPerToken) * P.tokensPerUnit; }
fn unit_kv(u: u32) -> u32 { return unit_h0(u) / P.group; }
`;

/** Compile-time configuration of the mass and keep kernels. */
export interface SqueezedLookupConfig {
  [key: string]: string | number | boolean;
  /**
   * Two-level lookup, level 2: only the candidates count — the clusters whose
   * coarse parent the unit kept (bindings 4 parents i32 `[kvHeads, clusters]`
   * and 5 coarse keep u32 `[units, coarseClusters]`); the others get mass 0
   * and are never kept, as if their size were 0.
   */
  masked: boolean;
}

/** `fn sz(u, sb, c) -> i32`: the size of cluster `c` of unit `u`, 0 for a non-candidate when masked. */
function sizeFn(masked: boolean): string {
  if (!masked) return "fn sz(u: u32, sb: u32, c: u32) -> i32 { return SIZE[sb + c]; }\n";
  return `@group(0) @binding(4) var<storage, read> PARENT: array<i32>;
@group(0) @binding(5) var<storage, read> CKEEP: array<u32>;
fn sz(u: u32, sb: u32, c: u32) -> i32 {
  let cand = CKEEP[u * P.coarseClusters + u32(PARENT[sb + c])] != 0u;
  return select(0, SIZE[sb + c], cand);
}
`;
}

/** Uniforms of the mass kernel. */
export const SQUEEZED_MASS_PARAMS: ParamsLayout = new ParamsLayout([...UNIT_FIELDS]);

/**
 * Workgroup `u` computes, for every cluster `c` of its KV head, the mean over
 * the unit's rows of `p̂_c = exp(u_c − max) / Σ_c' n_c' · exp(u_c' − max)`
 * (clusters with `n_c = 0` are left out of the max and the sum and get 0), as
 * `centroidLookup` does; `u_c` are the scaled centroid logits. A row with no
 * non-empty cluster adds nothing. Max and sum are workgroup tree reductions.
 *
 * Bindings: 0 uniforms, 1 logits f32 `[tokens, heads, clusters]`, 2 sizes i32
 * `[kvHeads, clusters]`, 3 mass f32 `[units, clusters]`; masked: 4 parents,
 * 5 coarse keep (see {@linkcode SqueezedLookupConfig}).
 */
export function squeezedMassWgsl(c: SqueezedLookupConfig): string {
  const wg = SQUEEZED_WORKGROUP;
  return /* wgsl */ `${SQUEEZED_MASS_PARAMS.wgsl(0)}
@group(0) @binding(1) var<storage, read> U: array<f32>;
@group(0) @binding(2) var<storage, read> SIZE: array<i32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;
${FLAT_WG_FN}
${UNIT_FNS}
${sizeFn(c.masked)}
const WG: u32 = ${wg}u;
var<workgroup> red: array<f32, ${wg}>;

fn reduce_max(lid: u32) -> f32 {
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    workgroupBarrier();
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
  }
  workgroupBarrier();
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn reduce_sum(lid: u32) -> f32 {
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    workgroupBarrier();
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
  }
  workgroupBarrier();
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let u = flat_wg(wid, nwg);
  if (u >= P.units) { return; }
  let C = P.clusters;
  let sb = unit_kv(u) * C;
  let ob = u * C;
  for (var c = lid; c < C; c += WG) { OUT[ob + c] = 0.0; }
  let rows = P.tokensPerUnit * P.rowsPerUnit;
  for (var r = 0u; r < rows; r++) {
    let t = unit_t0(u) + r / P.rowsPerUnit;
    let h = unit_h0(u) + r % P.rowsPerUnit;
    let base = (t * P.heads + h) * C;
    var m: f32 = ${NEG_BIG};
    for (var c = lid; c < C; c += WG) {
      if (sz(u, sb, c) > 0) { m = max(m, U[base + c]); }
    }
    red[lid] = m;
    let mx = reduce_max(lid);
    var s: f32 = 0.0;
    for (var c = lid; c < C; c += WG) {
      let n = sz(u, sb, c);
      if (n > 0) { s += f32(n) * exp(U[base + c] - mx); }
    }
    red[lid] = s;
    let den = reduce_sum(lid);
    if (den > 0.0) {
      let w = 1.0 / (f32(rows) * den);
      for (var c = lid; c < C; c += WG) {
        if (sz(u, sb, c) > 0) { OUT[ob + c] = OUT[ob + c] + exp(U[base + c] - mx) * w; }
      }
    }
  }
}
`;
}

/** Uniforms of the keep kernel. */
export const SQUEEZED_KEEP_PARAMS: ParamsLayout = new ParamsLayout([
  ...UNIT_FIELDS,
  // 0: threshold (p > threshold and n > 0), 1: top-k budget, 2: every non-empty cluster.
  ["mode", "u32"],
  ["threshold", "f32"],
  ["budgetKeys", "u32"],
]);

/**
 * Thread `(u, c)` of the flat grid decides whether unit `u` keeps cluster
 * `c`: threshold mode `p̂_c > threshold ∧ n_c > 0` (the authors' strict rule);
 * budget mode `W_c < budgetKeys`, where `W_c` sums the sizes of the clusters
 * ranked before `c` in the order (p̂ descending, index ascending) — exactly
 * the prefix `keepTop` keeps (the clusters taken in that order until their
 * sizes reach `budgetKeys`; the last may overshoot); mode 2 keeps every
 * non-empty cluster (threshold −∞). Masked (level 2 of a two-level lookup),
 * only candidates count and only candidates are kept.
 *
 * Bindings: 0 uniforms, 1 mass f32 `[units, clusters]`, 2 sizes i32
 * `[kvHeads, clusters]`, 3 keep u32 `[units, clusters]`; masked: 4 parents,
 * 5 coarse keep.
 */
export function squeezedKeepWgsl(c: SqueezedLookupConfig): string {
  const wg = SQUEEZED_WORKGROUP;
  const cand = c.masked ? "sz(u, sb, c) > 0" : "true";
  return /* wgsl */ `${SQUEEZED_KEEP_PARAMS.wgsl(0)}
@group(0) @binding(1) var<storage, read> PM: array<f32>;
@group(0) @binding(2) var<storage, read> SIZE: array<i32>;
@group(0) @binding(3) var<storage, read_write> KEEP: array<u32>;
${FLAT_WG_FN}
${UNIT_FNS}
${sizeFn(c.masked)}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = flat_wg(wid, nwg) * ${wg}u + lid;
  let C = P.clusters;
  if (e >= P.units * C) { return; }
  let u = e / C;
  let c = e % C;
  let sb = unit_kv(u) * C;
  let pb = u * C;
  let p = PM[e];
  var keep = false;
  if (P.mode == 0u) {
    keep = p > P.threshold && sz(u, sb, c) > 0;
  } else if (P.mode == 2u) {
    keep = sz(u, sb, c) > 0;
  } else {
    var w: u32 = 0u;
    for (var j = 0u; j < C; j++) {
      let q = PM[pb + j];
      if (q > p || (q == p && j < c)) { w += u32(sz(u, sb, j)); }
    }
    keep = (${cand}) && w < P.budgetKeys;
  }
  KEEP[e] = select(0u, 1u, keep);
}
`;
}

/** Uniforms of the spans kernel. */
export const SQUEEZED_SPANS_PARAMS: ParamsLayout = new ParamsLayout([
  ...UNIT_FIELDS,
  ["clustered", "u32"],
  ["stride", "u32"],
  ["pad0", "u32"],
]);

/**
 * Workgroup `u` turns the kept-cluster mask into the sorted spans of kept
 * keys of `[0, clustered)`: key `j` is kept when its cluster is
 * (`keep[u, assignments[kv, j]]`); a *boundary* is a position
 * `j ∈ [0, clustered]` where kept(j) ≠ kept(j − 1) (outside the range: not
 * kept). Boundaries alternate start, end, so compacting them in order — a
 * workgroup prefix sum over 256 positions at a time — writes the spans
 * `[s₀, e₀, s₁, e₁, …]` directly. Row `u` of the output holds the boundary
 * count at index 0 and the boundaries from index 1 (`stride ≥ clustered + 2`).
 *
 * Bindings: 0 uniforms, 1 keep u32 `[units, clusters]`, 2 assignments i32
 * `[kvHeads, clustered]`, 3 output i32 `[units, stride]`.
 */
export function squeezedSpansWgsl(): string {
  const wg = SQUEEZED_WORKGROUP;
  return /* wgsl */ `${SQUEEZED_SPANS_PARAMS.wgsl(0)}
@group(0) @binding(1) var<storage, read> KEEP: array<u32>;
@group(0) @binding(2) var<storage, read> ASSIGN: array<i32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<i32>;
${FLAT_WG_FN}
${UNIT_FNS}
const WG: u32 = ${wg}u;
var<workgroup> sc: array<u32, ${wg}>;

fn kept(u: u32, ab: u32, j: i32) -> bool {
  if (j < 0 || u32(j) >= P.clustered) { return false; }
  return KEEP[u * P.clusters + u32(ASSIGN[ab + u32(j)])] != 0u;
}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let u = flat_wg(wid, nwg);
  if (u >= P.units) { return; }
  let ab = unit_kv(u) * P.clustered;
  let ob = u * P.stride;
  var base: u32 = 0u;
  for (var j0 = 0u; j0 <= P.clustered; j0 += WG) {
    let j = j0 + lid;
    var flag: u32 = 0u;
    if (j <= P.clustered && kept(u, ab, i32(j)) != kept(u, ab, i32(j) - 1)) { flag = 1u; }
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
    if (flag == 1u) { OUT[ob + 1u + base + sc[lid] - 1u] = i32(j); }
    base += sc[WG - 1u];
  }
  if (lid == 0u) { OUT[ob] = i32(base); }
}
`;
}

/** Compile-time configuration of {@linkcode squeezedRotateWgsl}. */
export interface SqueezedRotateConfig {
  [key: string]: string | number | boolean;
  /** Head dimension (even). */
  headDim: number;
  /** RoPE pairing. */
  layout: "halves" | "adjacent";
  /** How queries are read. */
  query: WgslStorage;
}

/** Uniforms of the rotate kernel. */
export const SQUEEZED_ROTATE_PARAMS: ParamsLayout = new ParamsLayout([
  ["total", "u32"],
  ["heads", "u32"],
  ["qBase", "u32"],
]);

/**
 * Thread `e = (t·heads + h)·D + i` of the flat grid writes element `i` of
 * query `(t, h)` rotated to its token's position: `(cos, sin)` of each pair
 * come from a small host table `CS[t, pair]` computed in float64 for the
 * query positions only (what the CPU selector's `rotateRow` does).
 *
 * Bindings: 0 uniforms, 1 queries `[tq, heads, D]`, 2 cos/sin `vec2<f32>`
 * `[tq, D/2]`, 3 rotated queries f32 `[tq, heads, D]`.
 */
export function squeezedRotateWgsl(c: SqueezedRotateConfig): string {
  const d = c.headDim, half = d / 2, wg = SQUEEZED_WORKGROUP;
  const r = ropeElement(c.layout, half);
  return /* wgsl */ `${enableF16(c.query)}
${SQUEEZED_ROTATE_PARAMS.wgsl(0)}
${readOperand(1, "Q", c.query)}
@group(0) @binding(2) var<storage, read> CS: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;
${FLAT_WG_FN}
const D: u32 = ${d}u;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = flat_wg(wid, nwg) * ${wg}u + lid;
  if (e >= P.total) { return; }
  let i = e % D;
  let row = e - i;
  let t = e / (P.heads * D);
  let cs = CS[t * ${half}u + ${r.pair("i")}];
  let xi = ld_Q(P.qBase + e);
  let xp = ld_Q(P.qBase + row + ${r.partner("i")});
  OUT[e] = ${r.rotated("i", "xi", "xp", "cs")};
}
`;
}
