// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * WGSL of `GpuKvStore.appendGpu`: scatters GPU-resident keys and values
 * `[tokens, kvHeads, headDim]` into the store's paged layout, converting to
 * the storage dtype (private).
 *
 * @module
 */

import {
  enableF16,
  FLAT_WG_FN,
  KV_ROW_FN,
  ParamsLayout,
  readOperand,
  type WgslStorage,
} from "./common.ts";

/** Compile-time configuration of {@linkcode kvWriteWgsl}. */
export interface KvWriteConfig {
  [key: string]: string | number | boolean;
  /** How the source tensors are read. */
  src: WgslStorage;
  /** How the store is written. */
  dst: WgslStorage;
  /** Threads per workgroup. */
  workgroupSize: number;
}

/** Uniforms of the kv-write kernel. */
export const KV_WRITE_PARAMS: ParamsLayout = new ParamsLayout([
  ["tokens", "u32"],
  ["kvHeads", "u32"],
  ["headDim", "u32"],
  ["units", "u32"],
  ["srcKeyBase", "u32"],
  ["srcValueBase", "u32"],
  ["firstLocal", "u32"],
  ["pad0", "u32"],
  ["pageSize", "u32"],
  ["pageStride", "u32"],
  ["headStride", "u32"],
  ["rowStride", "u32"],
]);

/**
 * One thread per (token, head, unit): a unit is one element (f32, native f16)
 * or one pair of elements (packed f16). Padding elements past `headDim` are
 * written as 0.
 */
export function kvWriteWgsl(c: KvWriteConfig): string {
  const dstType = c.dst === "f32" ? "f32" : c.dst === "f16" ? "f16" : "u32";
  const packed = c.dst === "f16-packed";
  const store = packed
    ? `let e = 2u * unit;
  DK[o + unit] = pack2x16float(vec2<f32>(src_k(sk, e), src_k(sk, e + 1u)));
  DV[o + unit] = pack2x16float(vec2<f32>(src_v(sv, e), src_v(sv, e + 1u)));`
    : `DK[o + unit] = ${dstType}(src_k(sk, unit));
  DV[o + unit] = ${dstType}(src_v(sv, unit));`;
  // Row offsets of packed rows are in u32 words: halve the element index.
  const rowOffset = packed ? "kv_row(t, h) / 2u" : "kv_row(t, h)";
  return /* wgsl */ `${enableF16(c.src, c.dst)}
${KV_WRITE_PARAMS.wgsl(0)}
${readOperand(1, "SK", c.src)}
${readOperand(2, "SV", c.src)}
@group(0) @binding(3) var<storage, read_write> DK: array<${dstType}>;
@group(0) @binding(4) var<storage, read_write> DV: array<${dstType}>;
${KV_ROW_FN}
${FLAT_WG_FN}
fn src_k(base: u32, e: u32) -> f32 {
  if (e < P.headDim) { return ld_SK(base + e); }
  return 0.0;
}
fn src_v(base: u32, e: u32) -> f32 {
  if (e < P.headDim) { return ld_SV(base + e); }
  return 0.0;
}

@compute @workgroup_size(${c.workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let idx = flat_wg(wid, nwg) * ${c.workgroupSize}u + lid;
  if (idx >= P.tokens * P.kvHeads * P.units) { return; }
  let unit = idx % P.units;
  let th = idx / P.units;
  let h = th % P.kvHeads;
  let ts = th / P.kvHeads;
  let t = P.firstLocal + ts;
  let sk = P.srcKeyBase + (ts * P.kvHeads + h) * P.headDim;
  let sv = P.srcValueBase + (ts * P.kvHeads + h) * P.headDim;
  let o = ${rowOffset};
  ${store}
}
`;
}
