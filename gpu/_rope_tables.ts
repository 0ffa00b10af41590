// Copyright 2026 the longctx authors. MIT license.

/**
 * RoPE cos/sin tables on the GPU, shared by the kernels that rotate on read
 * (sparse attend, Landmark): one buffer per context and rope object.
 *
 * @module
 */

import { type GpuContext, STORAGE_USAGE } from "./device.ts";
import type { GpuRotary } from "./sparse_attend.ts";
import { ROPE_FINE_BITS, ROPE_FINE_ROWS } from "./_wgsl/common.ts";

/** Cached RoPE tables per context and rope object: `[fine 4096 rows | coarse rows]` of (cos, sin) pairs. */
const TABLES = new WeakMap<GpuContext, WeakMap<GpuRotary, { buffer: GPUBuffer; coarse: number }>>();

/**
 * The cos/sin tables of `rope` covering positions up to `maxAbs`, computed in
 * float64 and stored as f32: rows `b < 4096` hold `(cos, sin)(b·θ_i)`, row
 * `4096 + a` holds `(cos, sin)(a·4096·θ_i)`. Cached per context and rope;
 * regrown by doubling when a larger position arrives.
 */
export function ropeTableBuffer(gpu: GpuContext, rope: GpuRotary, maxAbs: number): GPUBuffer {
  let perGpu = TABLES.get(gpu);
  if (perGpu === undefined) TABLES.set(gpu, perGpu = new WeakMap());
  const need = Math.floor(maxAbs / ROPE_FINE_ROWS) + 1;
  const hit = perGpu.get(rope);
  if (hit !== undefined && hit.coarse >= need) return hit.buffer;
  const coarse = Math.max(need, 2 * (hit?.coarse ?? 8));
  const half = rope.headDim >> 1;
  const data = new Float32Array((ROPE_FINE_ROWS + coarse) * half * 2);
  const inv = rope.invFreq;
  for (let b = 0; b < ROPE_FINE_ROWS; b++) {
    for (let i = 0; i < half; i++) {
      const angle = b * inv[i]!;
      data[(b * half + i) * 2] = Math.cos(angle);
      data[(b * half + i) * 2 + 1] = Math.sin(angle);
    }
  }
  for (let a = 0; a < coarse; a++) {
    const o = (ROPE_FINE_ROWS + a) * half;
    for (let i = 0; i < half; i++) {
      const angle = a * 2 ** ROPE_FINE_BITS * inv[i]!;
      data[(o + i) * 2] = Math.cos(angle);
      data[(o + i) * 2 + 1] = Math.sin(angle);
    }
  }
  const buffer = gpu.device.createBuffer({
    label: "longctx rope tables",
    size: data.byteLength,
    usage: STORAGE_USAGE,
  });
  gpu.write(buffer, 0, data);
  hit?.buffer.destroy();
  perGpu.set(rope, { buffer, coarse });
  return buffer;
}
