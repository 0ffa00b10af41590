// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * WGSL pieces every kernel shares (private): typed loads for f32, native f16
 * and packed f16 storage, the paged KV addressing rule, the bit-level encoding
 * of an empty row's `lse`, the flat workgroup index of a 2-D grid, and
 * {@linkcode ParamsLayout}, which writes a kernel's uniform struct and packs
 * its values from one field list so the two can never drift apart.
 *
 * ## Non-finite values (STYLE item 14)
 *
 * WGSL does not promise IEEE infinities or NaN, so kernels never compute with
 * them: masked logits are skipped (never set to −∞), running maxima start at
 * the finite {@linkcode NEG_BIG}, and a row that read no key is written as
 * `out = 0` with its `lse` stored as the **bit pattern** of −∞
 * (`0xff800000`) through a `u32` view of the `lse` buffer. Downloaded as f32
 * that is exactly `-Infinity`, the CPU reference's result; readers of `lse`
 * test the bits, never a float comparison against infinity.
 *
 * ## Rules the kernels follow (each learned from a failing parity test)
 *
 * - A `var` declared inside a loop body is zeroed explicitly: naga (Deno's
 *   WGSL compiler) hoists function variables to the entry block and does not
 *   re-initialise them on each iteration, so `var s: array<f32, 4>;` in a tile
 *   loop silently accumulated across tiles.
 * - Per-thread state is kept to a few dozen floats (accumulators of
 *   `rows × ⌈headDim / workgroupSize⌉`), never a `headDim`-sized private array
 *   per row: besides register pressure on GPUs, a prefill variant holding
 *   `q[headDim]` and `acc[headDim]` per thread returned wrong rows on
 *   lavapipe.
 * - Loop bounds around barriers come from uniforms, builtins or
 *   `workgroupUniformLoad`, so the uniformity analysis accepts them.
 * - Identifiers avoid WGSL's reserved words (`pass`, `target`, …).
 *
 * @module
 */

/**
 * How a float operand is stored in a GPU buffer, as a kernel reads it:
 * `"f32"`; `"f16"` as a native `array<f16>` (needs the `shader-f16` feature);
 * `"f16-packed"`, two halves per `u32` unpacked with the core builtin
 * `unpack2x16float` (works on every adapter).
 */
export type WgslStorage = "f32" | "f16" | "f16-packed";

/** Bit pattern of f32 −∞, the `lse` of a row that read no key. */
export const NEG_INF_BITS = 0xff800000;

/** Finite stand-in for −∞ as the initial running maximum (never exponentiated). */
export const NEG_BIG = "-3.0e38";

/** `enable f16;` when any operand is native f16, else nothing. */
export function enableF16(...storages: readonly WgslStorage[]): string {
  return storages.includes("f16") ? "enable f16;\n" : "";
}

/**
 * Declares a read-only storage array `name` at `binding` of group 0 and
 * `fn ld_<name>(i: u32) -> f32`, which returns element `i` as f32.
 */
export function readOperand(binding: number, name: string, storage: WgslStorage): string {
  const decl = (t: string): string =>
    `@group(0) @binding(${binding}) var<storage, read> ${name}: array<${t}>;\n`;
  switch (storage) {
    case "f32":
      return `${decl("f32")}fn ld_${name}(i: u32) -> f32 { return ${name}[i]; }\n`;
    case "f16":
      return `${decl("f16")}fn ld_${name}(i: u32) -> f32 { return f32(${name}[i]); }\n`;
    case "f16-packed":
      return `${decl("u32")}fn ld_${name}(i: u32) -> f32 {
  let v = unpack2x16float(${name}[i >> 1u]);
  return select(v.x, v.y, (i & 1u) == 1u);
}\n`;
  }
}

/** WGSL element type of workgroup tiles that hold `storage` data. */
export function tileType(storage: WgslStorage): "f32" | "f16" {
  return storage === "f16" ? "f16" : "f32";
}

/**
 * `fn kv_row(t: u32, h: u32) -> u32`: element index (relative to the
 * segment's base) of the first element of local token `t`, KV head `h`, for
 * the paged layout described by the uniform fields `pageSize`, `pageStride`,
 * `headStride`, `rowStride` of struct `P`. A dense `[tokens, kvHeads, headDim]`
 * tensor is the one-page case (`pageSize` ≥ tokens, `headStride = headDim`,
 * `rowStride = kvHeads · headDim`).
 */
export const KV_ROW_FN = `fn kv_row(t: u32, h: u32) -> u32 {
  let pg = t / P.pageSize;
  return pg * P.pageStride + h * P.headStride + (t - pg * P.pageSize) * P.rowStride;
}
`;

/** The KV-layout fields {@linkcode KV_ROW_FN} reads, to splice into a {@linkcode ParamsLayout}. */
export const KV_LAYOUT_FIELDS: readonly ParamField[] = [
  ["keyBase", "u32"],
  ["valueBase", "u32"],
  ["pageSize", "u32"],
  ["pageStride", "u32"],
  ["headStride", "u32"],
  ["rowStride", "u32"],
];

/**
 * `fn flat_wg(wid, nwg) -> u32`: the linear workgroup index of a 2-D grid
 * (see {@linkcode grid2d}).
 */
export const FLAT_WG_FN =
  `fn flat_wg(wid: vec3u, nwg: vec3u) -> u32 { return wid.x + wid.y * nwg.x; }
`;

/**
 * Splits `n` workgroups over x and y so that neither exceeds `maxPerDim`
 * (WebGPU's default limit is 65535 per dimension). Kernels recover the linear
 * index with {@linkcode FLAT_WG_FN} and skip indices `>= n`.
 */
export function grid2d(n: number, maxPerDim: number): [number, number] {
  if (n <= maxPerDim) return [Math.max(n, 1), 1];
  const y = Math.ceil(n / maxPerDim);
  return [Math.ceil(n / y), y];
}

/**
 * RoPE on read from two f32 cos/sin tables computed on the host in float64:
 * `fine[b][i] = (cos, sin)(b·θ_i)` for `b < 4096` and
 * `coarse[a][i] = (cos, sin)(a·4096·θ_i)`, combined with the angle-addition
 * formula, so an integer position `p = a·4096 + b` costs four table reads and
 * loses no precision to an f32 angle. Negative positions use `sin(−x) = −sin x`.
 * Binding `binding` holds the tables, `[fine | coarse]` as `vec2<f32>` rows of
 * `half = headDim / 2` pairs.
 */
export function ropeTables(binding: number, half: number): string {
  return `@group(0) @binding(${binding}) var<storage, read> rope_cs: array<vec2<f32>>;
fn rope_cs_at(p: i32, i: u32) -> vec2<f32> {
  let ap = u32(abs(p));
  let f = rope_cs[(ap & ${ROPE_FINE_ROWS - 1}u) * ${half}u + i];
  let c = rope_cs[(${ROPE_FINE_ROWS}u + (ap >> ${ROPE_FINE_BITS}u)) * ${half}u + i];
  let cs = vec2<f32>(c.x * f.x - c.y * f.y, c.y * f.x + c.x * f.y);
  return select(cs, vec2<f32>(cs.x, -cs.y), p < 0);
}
`;
}

/** Rows of the fine RoPE table (a power of two). */
export const ROPE_FINE_ROWS = 4096;
/** `log2(ROPE_FINE_ROWS)`. */
export const ROPE_FINE_BITS = 12;

/**
 * WGSL expressions of element `i` of `R(p)·x` for a rope `layout`, given a
 * reader `x(j)` of the unrotated vector and `cs = rope_cs_at(p, pair)`.
 * Returns `{ pair, partner, rotated }` snippets: the pair index of `i`, the
 * index of its partner element, and the rotated value from `xi`, `xp` (the
 * element and its partner) and `cs`.
 */
export function ropeElement(layout: "halves" | "adjacent", half: number): {
  pair: (i: string) => string;
  partner: (i: string) => string;
  rotated: (i: string, xi: string, xp: string, cs: string) => string;
} {
  if (layout === "halves") {
    return {
      pair: (i) => `select(${i} - ${half}u, ${i}, ${i} < ${half}u)`,
      partner: (i) => `select(${i} - ${half}u, ${i} + ${half}u, ${i} < ${half}u)`,
      // i < h: x_i cos − x_{i+h} sin; i ≥ h: x_{i−h} sin + x_i cos.
      rotated: (i, xi, xp, cs) =>
        `select(${xp} * ${cs}.y + ${xi} * ${cs}.x, ${xi} * ${cs}.x - ${xp} * ${cs}.y, ${i} < ${half}u)`,
    };
  }
  return {
    pair: (i) => `(${i} >> 1u)`,
    partner: (i) => `(${i} ^ 1u)`,
    // even: x_{2k} cos − x_{2k+1} sin; odd: x_{2k} sin + x_{2k+1} cos.
    rotated: (i, xi, xp, cs) =>
      `select(${xp} * ${cs}.y + ${xi} * ${cs}.x, ${xi} * ${cs}.x - ${xp} * ${cs}.y, (${i} & 1u) == 0u)`,
  };
}

/** One uniform field: name and 4-byte scalar type. */
export type ParamField = readonly [name: string, type: "u32" | "i32" | "f32"];

/**
 * A kernel's uniform struct, declared once: {@linkcode ParamsLayout.wgsl}
 * writes the WGSL struct and binding, {@linkcode ParamsLayout.pack} the bytes
 * in the same order (all fields are 4-byte scalars, so offsets are 4·index;
 * the buffer is padded to 16 bytes).
 */
export class ParamsLayout {
  readonly fields: readonly ParamField[];
  readonly byteLength: number;
  #index: Map<string, number>;

  constructor(fields: readonly ParamField[]) {
    this.fields = fields;
    this.byteLength = Math.max(16, Math.ceil((fields.length * 4) / 16) * 16);
    this.#index = new Map(fields.map((f, i) => [f[0], i]));
  }

  /** `struct Params {...}` and `@group(0) @binding(binding) var<uniform> P: Params;`. */
  wgsl(binding: number): string {
    const body = this.fields.map(([n, t]) => `  ${n}: ${t},`).join("\n");
    return `struct Params {\n${body}\n}\n@group(0) @binding(${binding}) var<uniform> P: Params;\n`;
  }

  /** Packs `values` (every field required) into a new buffer of {@linkcode byteLength} bytes. */
  pack(values: Readonly<Record<string, number>>): ArrayBuffer {
    const buf = new ArrayBuffer(this.byteLength);
    const u = new Uint32Array(buf), i = new Int32Array(buf), f = new Float32Array(buf);
    for (const [name, type] of this.fields) {
      const v = values[name];
      if (v === undefined) throw new Error(`internal: missing uniform field ${name}`);
      const k = this.#index.get(name)!;
      if (type === "u32") u[k] = v >>> 0;
      else if (type === "i32") i[k] = v | 0;
      else f[k] = v;
    }
    return buf;
  }
}

/**
 * The online-softmax update of one key tile shared by the tiled attend
 * kernels (dense decode, sparse attend, Landmark): the tile's scaled logits
 * are in `ps[r * WG + j]` for `j < n`, and the running `m`, `l` and `acc`
 * (`[G, DPT]` per thread) are rescaled and accumulated; `row_scale` and
 * `row_max` are workgroup scratch. `loadV` is a statement that defines `v`,
 * the value of tile key `j` at dimension `i`.
 *
 * @param loadV WGSL statement(s) defining `v`.
 * @returns WGSL statements for the kernel's tile loop.
 */
export function onlineSoftmaxTile(loadV: string): string {
  return `if (lid < G) {
      var mx = m;
      for (var j = 0u; j < n; j++) { mx = max(mx, ps[lid * WG + j]); }
      row_scale[lid] = select(exp(m - mx), 0.0, l == 0.0);
      row_max[lid] = mx;
      m = mx;
    }
    workgroupBarrier();
    if (lid < n) {
      for (var r = 0u; r < G; r++) { ps[r * WG + lid] = exp(ps[r * WG + lid] - row_max[r]); }
    }
    workgroupBarrier();
    if (lid < G) {
      var sum: f32 = 0.0;
      for (var j = 0u; j < n; j++) { sum += ps[lid * WG + j]; }
      l = l * row_scale[lid] + sum;
    }
    for (var q = 0u; q < DPT; q++) {
      let i = lid + q * WG;
      if (i < D) {
        for (var r = 0u; r < G; r++) { acc[r * DPT + q] *= row_scale[r]; }
        for (var j = 0u; j < n; j++) {
          ${loadV}
          for (var r = 0u; r < G; r++) { acc[r * DPT + q] += ps[r * WG + j] * v; }
        }
      }
    }`;
}
