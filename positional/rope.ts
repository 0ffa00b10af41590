// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Rotary position embedding (RoPE): rotate each pair of query/key dimensions
 * by an angle proportional to the token position, so that `q·k` depends only
 * on the distance between the two tokens.
 *
 * @module
 */

import { copyInto, zeros } from "../tensor/tensor.ts";
import type { FloatArray, FloatDType, Tensor } from "../tensor/types.ts";
import {
  describeValue,
  requireFinite,
  requireNonNegativeInt,
  requireOneOf,
  requirePositiveInt,
} from "../tensor/validate.ts";
import { checkBase, checkHeadDim, checkObject, checkScaling, orDefault } from "./_validate.ts";
import { DEFAULT_ROPE_BASE, ropeParameters, type RopeScaling } from "./scaling.ts";

/**
 * Which dimensions form a rotated pair.
 *
 * | name | pairs | used by |
 * | --- | --- | --- |
 * | `"halves"` | `(i, i + d/2)` | Hugging Face Llama/Mistral/Qwen `rotate_half`, GPT-NeoX |
 * | `"adjacent"` | `(2i, 2i + 1)` | Meta's original Llama, llama2.c, GPT-J, RoFormer |
 *
 * Pair `i` turns at frequency `θ_i` in both; the two differ only by a
 * permutation of the head dimensions (see {@linkcode Rope}).
 */
export type RopeLayout = "halves" | "adjacent";

/**
 * Default number of integer positions whose cos/sin the table may hold
 * (65536): at most `65536 × headDim × 4` bytes, 32 MiB for `headDim = 128`.
 */
export const DEFAULT_ROPE_TABLE_LIMIT = 65536;

const LAYOUTS: readonly RopeLayout[] = ["halves", "adjacent"];

/** Smallest table allocation, in positions. */
const MIN_TABLE_ROWS = 64;

/** Options of {@linkcode Rope}. */
export interface RopeOptions {
  /** Dimensions per head that are rotated, a positive even integer. */
  headDim: number;
  /** The RoPE base (`rope_theta`), finite and `> 1`. @default {10000} */
  base?: number;
  /** Pairing of dimensions. @default {"halves"} */
  layout?: RopeLayout;
  /** Frequency scaling for context extension. @default {{ type: "none" }} */
  scaling?: RopeScaling;
  /**
   * Sequence length whose frequencies are in force, for `"dynamic-ntk"` only
   * (ignored, but validated, otherwise); see {@linkcode Rope.forSequenceLength}.
   * @default {scaling.originalMaxPosition}
   */
  sequenceLength?: number;
  /**
   * Integer positions in `[0, tableLimit)` read cos/sin from a lazily grown f32
   * table (`positions × headDim × 4` bytes, grown by doubling); other
   * positions are computed directly. 0 disables the table.
   * @default {65536}
   */
  tableLimit?: number;
}

/**
 * Rotary position embedding with optional context-extension scaling.
 *
 * Pair `i` of a head vector at position `p` is rotated by the angle `p · θ_i`
 * with `θ_i = base^(-2i/d)` (before scaling):
 * `(x, y) → (x cos − y sin, x sin + y cos)`. Rotations compose, so
 * `R(p)q · R(p')k = q · R(p' − p)k`: attention scores depend only on the
 * relative position, and a cached key can be moved with one more rotation.
 *
 * Scaling ({@linkcode RopeScaling}) only changes `θ_i` (and, for YaRN, the
 * {@linkcode Rope.attentionFactor}); the rotation itself is always orthogonal.
 *
 * The two layouts are the same map up to a permutation of dimensions: with
 * `P` taking `(x_0, x_1, …, x_{d−1})` to `(x_0, x_2, …, x_{d−2}, x_1, x_3, …, x_{d−1})`,
 * `adjacent(x) = P⁻¹ · halves(P · x)`.
 *
 * | cost | |
 * | --- | --- |
 * | {@linkcode Rope.rotateRow} | `2d` multiplies; a table read for integer positions in `[0, tableLimit)`, else `d` trig calls |
 * | table memory | `rows × headDim × 4` bytes, rows = largest position seen rounded up by doubling, at most `tableLimit` |
 * | allocation | only when the table grows (call {@linkcode Rope.reserve} up front to avoid it) |
 *
 * @see https://arxiv.org/abs/2104.09864 (RoFormer)
 *
 * @example Scores depend only on relative position
 * ```ts
 * import { Rope } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * const rope = new Rope({ headDim: 4 });
 * const q = new Float32Array([1, 2, 3, 4]), k = new Float32Array([0.5, -1, 2, 0]);
 * const score = (pq: number, pk: number): number => {
 *   const a = new Float32Array(4), b = new Float32Array(4);
 *   rope.rotateRow(q, 0, a, 0, pq);
 *   rope.rotateRow(k, 0, b, 0, pk);
 *   return a.reduce((s, v, i) => s + v * b[i], 0);
 * };
 * assert.ok(Math.abs(score(10, 7) - score(1003, 1000)) < 1e-4);
 * ```
 *
 * @example YaRN for a 4× longer context (HF `rope_scaling = { rope_type: "yarn", factor: 4 }`)
 * ```ts
 * import { Rope } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * const rope = new Rope({
 *   headDim: 128,
 *   base: 1e6,
 *   scaling: { type: "yarn", factor: 4, originalMaxPosition: 32768 },
 * });
 * assert.equal(rope.attentionFactor, 0.1 * Math.log(4) + 1); // multiply q and k by it
 * assert.equal(rope.invFreq[0], 1);                         // fastest pair untouched
 * ```
 */
export class Rope {
  /** Dimensions per head, even. */
  readonly headDim: number;
  /** Pairing of dimensions. */
  readonly layout: RopeLayout;
  /**
   * The base the frequencies follow: the given base, scaled for `"ntk"` and
   * `"dynamic-ntk"` (at this object's sequence length), replaced for `"base"`.
   */
  readonly base: number;
  /** The scaling in force (a frozen copy of the option). */
  readonly scaling: Readonly<RopeScaling>;
  /** Inverse frequencies `θ_i` after scaling, shape `[headDim / 2]`. Do not mutate. */
  readonly invFreq: Float64Array;
  /**
   * Multiplier for both queries and keys: YaRN's `mscale` (see
   * {@linkcode yarnAttentionFactor}), 1 for every other scaling. The rotation
   * methods do not apply it, so that rotations stay orthogonal and compose;
   * multiply q and k by it (as transformers does through `cos` and `sin`),
   * or equivalently the logits (the softmax scale) by its square.
   */
  readonly attentionFactor: number;
  /** Integer positions `[0, tableLimit)` are served from the cos/sin table. */
  readonly tableLimit: number;

  #half: number;
  #adjacent: boolean;
  #givenBase: number;
  #sequenceLength: number;
  #derived: Rope | undefined = undefined;
  /** Interleaved `[cos, sin]` per pair per position: `[rows, headDim/2, 2]` f32. */
  #table: Float32Array = new Float32Array(0);
  #rows = 0;
  /** cos/sin of the direct path, `[headDim/2, 2]` f64. */
  #scratch: Float64Array;

  /**
   * Validates the options and computes the scaled inverse frequencies; the
   * cos/sin table is allocated lazily, on first use.
   *
   * @param options Head dimension, base, layout, scaling, table size.
   * @throws {TypeError} If `options`/`scaling` is not an object, `layout` or
   *   `scaling.type` is unknown.
   * @throws {RangeError} If `headDim` is not a positive even integer, `base <= 1`,
   *   a scaling factor is below 1 or not finite, or an integer option is out of range.
   */
  constructor(options: RopeOptions) {
    const action = "create Rope";
    checkObject(action, "options", options);
    this.headDim = checkHeadDim(action, options.headDim);
    this.layout = requireOneOf(action, "layout", orDefault(options.layout, "halves"), LAYOUTS);
    this.#givenBase = checkBase(action, "base", orDefault(options.base, DEFAULT_ROPE_BASE));
    const scaling = checkScaling(action, "scaling", orDefault(options.scaling, { type: "none" }));
    this.scaling = Object.freeze({ ...scaling });
    this.tableLimit = requireNonNegativeInt(
      action,
      "tableLimit",
      orDefault(options.tableLimit, DEFAULT_ROPE_TABLE_LIMIT),
    );
    if (this.tableLimit * this.headDim > 2 ** 30) {
      throw new RangeError(
        `Cannot ${action}: tableLimit × headDim must be at most 2^30 floats, got ${this.tableLimit} × ${this.headDim}`,
      );
    }
    const original = scaling.type === "dynamic-ntk" ? scaling.originalMaxPosition : 1;
    const length = options.sequenceLength === undefined
      ? original
      : requirePositiveInt(action, "sequenceLength", options.sequenceLength);
    this.#sequenceLength = Math.max(length, original);

    const p = ropeParameters(this.headDim, {
      base: this.#givenBase,
      scaling,
      sequenceLength: this.#sequenceLength,
    });
    this.invFreq = p.invFreq;
    this.attentionFactor = p.attentionFactor;
    this.base = p.base;
    this.#half = this.headDim / 2;
    this.#adjacent = this.layout === "adjacent";
    this.#scratch = new Float64Array(this.headDim);
  }

  /**
   * The RoPE in force for a sequence of `seqLen` tokens. Only dynamic NTK
   * depends on the length: up to `originalMaxPosition` it is plain RoPE, beyond
   * it the base grows with `seqLen` (see {@linkcode dynamicNtkBase}). Every
   * other scaling returns `this`.
   *
   * The result depends only on `seqLen` (transformers additionally keeps the
   * largest length seen until the length drops back to the trained one). The
   * last distinct result is cached, so repeated calls with the same length
   * return the same object and its table.
   *
   * @param seqLen Current sequence length (cached plus new tokens), a positive integer.
   * @returns A `Rope` with the same options and the frequencies for that length
   *   (`this` when unchanged).
   * @throws {RangeError} If `seqLen` is not a positive integer.
   *
   * @example Dynamic NTK switches on past the trained length
   * ```ts
   * import { Rope } from "@longctx/longctx/positional";
   * import assert from "node:assert/strict";
   * const rope = new Rope({ headDim: 8, scaling: { type: "dynamic-ntk", factor: 2, originalMaxPosition: 16 } });
   * assert.equal(rope.forSequenceLength(10), rope);
   * const longer = rope.forSequenceLength(32);
   * assert.notEqual(longer, rope);
   * assert.equal(longer.base, 10000 * 3 ** (8 / 6));
   * assert.equal(rope.forSequenceLength(32), longer);
   * ```
   */
  forSequenceLength(seqLen: number): Rope {
    requirePositiveInt("select Rope for a sequence length", "seqLen", seqLen);
    const scaling = this.scaling;
    if (scaling.type !== "dynamic-ntk") return this;
    const length = Math.max(seqLen, scaling.originalMaxPosition);
    if (length === this.#sequenceLength) return this;
    const cached = this.#derived;
    if (cached !== undefined && cached.#sequenceLength === length) return cached;
    const next = new Rope({
      headDim: this.headDim,
      base: this.#givenBase,
      layout: this.layout,
      scaling,
      sequenceLength: length,
      tableLimit: this.tableLimit,
    });
    this.#derived = next;
    return next;
  }

  /**
   * Rotates one head vector: `dst[dOff … dOff+headDim) = R(position) · src[sOff … sOff+headDim)`.
   *
   * This is the hot path of sparse attention (one call per key read): it
   * allocates nothing unless the table must grow, reads cos/sin from the f32
   * table for integer positions in `[0, tableLimit)`, and otherwise computes
   * them from the float64 angle `position · θ_i` (negative, huge and
   * fractional positions are all allowed). The products are formed in float64
   * and rounded once on store (to f16 for a `Float16Array`).
   *
   * Offsets are not checked: the caller guarantees `sOff + headDim <= src.length`
   * and `dOff + headDim <= dst.length`. `src` and `dst` may be the same array
   * at the same offset (in place); partially overlapping ranges are not supported.
   *
   * @param src Input storage, one row of `headDim` values at `sOff`.
   * @param sOff Index of the row's first element in `src`.
   * @param dst Output storage (written), `headDim` values at `dOff`.
   * @param dOff Index of the row's first element in `dst`.
   * @param position Token position, any finite number.
   * @throws {RangeError} If `position` is not finite.
   *
   * @example In place, then back with the opposite position
   * ```ts
   * import { Rope } from "@longctx/longctx/positional";
   * import assert from "node:assert/strict";
   * const rope = new Rope({ headDim: 2 });
   * const v = new Float32Array([1, 0]);
   * rope.rotateRow(v, 0, v, 0, Math.PI / 2); // θ_0 = 1, so a quarter turn
   * assert.ok(Math.abs(v[0]) < 1e-7 && Math.abs(v[1] - 1) < 1e-7);
   * rope.rotateRow(v, 0, v, 0, -Math.PI / 2);
   * assert.ok(Math.abs(v[0] - 1) < 1e-7 && Math.abs(v[1]) < 1e-7);
   * ```
   */
  rotateRow(
    src: FloatArray,
    sOff: number,
    dst: FloatArray,
    dOff: number,
    position: number,
  ): void {
    let cs: Float32Array | Float64Array;
    let c: number;
    if ((position | 0) === position && position >= 0 && position < this.#rows) {
      cs = this.#table;
      c = position * this.headDim;
    } else if (
      Number.isInteger(position) && position >= 0 && position < this.tableLimit
    ) {
      this.reserve(position + 1);
      cs = this.#table;
      c = position * this.headDim;
    } else {
      if (!Number.isFinite(position)) {
        throw new RangeError(
          `Cannot rotate row: position must be a finite number, got ${describeValue(position)}`,
        );
      }
      cs = this.#scratch;
      c = 0;
      fillCosSin(cs, 0, this.invFreq, position);
    }
    if (this.#adjacent) rotateAdjacent(src, sOff, dst, dOff, cs, c, this.#half);
    else rotateHalves(src, sOff, dst, dOff, cs, c, this.#half);
  }

  /**
   * Grows the cos/sin table to cover positions `[0, min(positions, tableLimit))`
   * now, so that later {@linkcode Rope.rotateRow} calls never allocate.
   * Costs `positions × headDim × 4` bytes and `positions × headDim` trig calls.
   *
   * @param positions Number of leading positions to cover, a non-negative integer.
   * @throws {RangeError} If `positions` is not a non-negative integer.
   *
   * @example
   * ```ts
   * import { Rope } from "@longctx/longctx/positional";
   * import assert from "node:assert/strict";
   * const rope = new Rope({ headDim: 64, tableLimit: 4096 });
   * rope.reserve(1000);
   * assert.ok(rope.tableBytes >= 1000 * 64 * 4);
   * rope.reserve(1e6); // capped at tableLimit
   * assert.equal(rope.tableBytes, 4096 * 64 * 4);
   * ```
   */
  reserve(positions: number): void {
    requireNonNegativeInt("reserve Rope table", "positions", positions);
    const want = Math.min(positions, this.tableLimit);
    if (want <= this.#rows) return;
    const rows = Math.min(this.tableLimit, Math.max(want, 2 * this.#rows, MIN_TABLE_ROWS));
    const d = this.headDim;
    const table = new Float32Array(rows * d);
    table.set(this.#table);
    for (let p = this.#rows; p < rows; p++) fillCosSin(table, p * d, this.invFreq, p);
    this.#table = table;
    this.#rows = rows;
  }

  /** Bytes held by the cos/sin table now (`rows × headDim × 4`). */
  get tableBytes(): number {
    return this.#table.byteLength;
  }

  /**
   * Rotates every head of every token in place: token `t` goes to
   * `positions[t]`, or to `positions + t` when `positions` is a number.
   * Positions are all validated before anything is written.
   *
   * @param x Tensor of shape `[tokens, heads, headDim]` (`"thd"`; `[heads, tokens, headDim]`
   *   when its layout is `"htd"`) or `[tokens, headDim]`, f32 or f16, any strides with
   *   last stride 1 (written).
   * @param positions One finite position per token (`Int32Array`, `number[]`, …), or the
   *   position of token 0 with the rest consecutive.
   * @throws {TypeError} If `x` is not an f32/f16 tensor of rank 2 or 3 whose last axis is
   *   `headDim` with stride 1, or if `positions` has the wrong length.
   * @throws {RangeError} If a position is not finite.
   *
   * @example Prefill positions 100…102 for two heads
   * ```ts
   * import { Rope } from "@longctx/longctx/positional";
   * import { randn } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const rope = new Rope({ headDim: 8 });
   * const q = randn([3, 2, 8], { seed: 1, layout: "thd" });
   * const before = Float32Array.from(q.data);
   * rope.applyInto(q, 100);
   * const row = new Float32Array(8);
   * rope.rotateRow(before, 2 * 16 + 8, row, 0, 102); // token 2, head 1
   * assert.deepEqual(q.data.subarray(40, 48), row);
   * ```
   */
  applyInto(x: Tensor<FloatDType>, positions: ArrayLike<number> | number): void {
    const action = "apply Rope";
    const g = this.#geometry(action, x);
    const start = typeof positions === "number"
      ? requireFinite(action, "positions", positions)
      : checkPositions(action, positions, g.tokens, x.shape);
    const data = x.data;
    for (let t = 0; t < g.tokens; t++) {
      const p = typeof positions === "number" ? start + t : positions[t]!;
      let o = x.offset + t * g.tokenStride;
      for (let h = 0; h < g.heads; h++, o += g.headStride) this.rotateRow(data, o, data, o, p);
    }
  }

  /**
   * Out-of-place {@linkcode Rope.applyInto}: copies `x` to a new contiguous f32
   * tensor (keeping its layout name) and rotates the copy.
   *
   * @param x Tensor of shape `[tokens, heads, headDim]` or `[tokens, headDim]`, f32 or f16,
   *   last stride 1 (not modified).
   * @param positions One finite position per token, or the position of token 0.
   * @returns A new contiguous f32 tensor of `x`'s shape.
   * @throws {TypeError} As {@linkcode Rope.applyInto}.
   * @throws {RangeError} As {@linkcode Rope.applyInto}.
   *
   * @example Adjacent pairs, explicit positions
   * ```ts
   * import { Rope } from "@longctx/longctx/positional";
   * import { tensor } from "@longctx/longctx/tensor";
   * import assert from "node:assert/strict";
   * const rope = new Rope({ headDim: 2, layout: "adjacent" });
   * const k = tensor(new Float32Array([1, 0, 1, 0]), [2, 2]); // [tokens, headDim]
   * const out = rope.apply(k, [0, Math.PI]);
   * assert.deepEqual(Array.from(out.data, (v) => Math.round(v)), [1, 0, -1, 0]);
   * assert.deepEqual(Array.from(k.data), [1, 0, 1, 0]);
   * ```
   */
  apply(x: Tensor<FloatDType>, positions: ArrayLike<number> | number): Tensor<"f32"> {
    this.#geometry("apply Rope", x);
    const out = zeros("f32", x.shape, x.layout !== undefined ? { layout: x.layout } : {});
    copyInto(out, x);
    this.applyInto(out, positions);
    return out;
  }

  #geometry(action: string, x: Tensor): Geometry {
    if (x === null || typeof x !== "object" || !Array.isArray(x.shape)) {
      throw new TypeError(`Cannot ${action}: x must be a tensor, got ${describeValue(x)}`);
    }
    if (x.dtype !== "f32" && x.dtype !== "f16") {
      throw new TypeError(
        `Cannot ${action}: x dtype must be "f32" or "f16", got ${describeValue(x.dtype)}`,
      );
    }
    const r = x.shape.length;
    if ((r !== 2 && r !== 3) || x.shape[r - 1] !== this.headDim) {
      throw new TypeError(
        `Cannot ${action}: x must have shape [tokens, heads, ${this.headDim}] or [tokens, ${this.headDim}], got shape ${
          describeValue(x.shape)
        }`,
      );
    }
    if (x.strides[r - 1] !== 1) {
      throw new TypeError(
        `Cannot ${action}: x must have last stride 1 (use contiguous()), got strides ${
          describeValue(x.strides)
        }`,
      );
    }
    if (r === 2) {
      return { tokens: x.shape[0]!, tokenStride: x.strides[0]!, heads: 1, headStride: 0 };
    }
    const ta = x.layout === "htd" ? 1 : 0;
    return {
      tokens: x.shape[ta]!,
      tokenStride: x.strides[ta]!,
      heads: x.shape[1 - ta]!,
      headStride: x.strides[1 - ta]!,
    };
  }
}

interface Geometry {
  tokens: number;
  tokenStride: number;
  heads: number;
  headStride: number;
}

/** Checks an array of positions; returns 0 (the unused start). */
function checkPositions(
  action: string,
  positions: ArrayLike<number>,
  tokens: number,
  shape: readonly number[],
): number {
  if (positions === null || typeof positions !== "object" || typeof positions.length !== "number") {
    throw new TypeError(
      `Cannot ${action}: positions must be a number or an array of numbers, got ${
        describeValue(positions)
      }`,
    );
  }
  if (positions.length !== tokens) {
    throw new TypeError(
      `Cannot ${action}: positions must have one entry per token (${tokens} for x shape ${
        describeValue(shape)
      }), got length ${positions.length}`,
    );
  }
  for (let t = 0; t < tokens; t++) {
    const p = positions[t];
    if (typeof p !== "number" || !Number.isFinite(p)) {
      throw new RangeError(
        `Cannot ${action}: positions[${t}] must be a finite number, got ${describeValue(p)}`,
      );
    }
  }
  return 0;
}

/** Writes `[cos, sin]` of `position · invFreq[i]` for every pair at `out[o + 2i]`. */
function fillCosSin(
  out: Float32Array | Float64Array,
  o: number,
  invFreq: Float64Array,
  position: number,
): void {
  for (let i = 0; i < invFreq.length; i++) {
    const angle = position * invFreq[i]!;
    out[o + 2 * i] = Math.cos(angle);
    out[o + 2 * i + 1] = Math.sin(angle);
  }
}

/** Pairs (i, i + h): HF `x·cos + rotate_half(x)·sin`. */
function rotateHalves(
  src: FloatArray,
  s: number,
  dst: FloatArray,
  o: number,
  cs: Float32Array | Float64Array,
  c: number,
  h: number,
): void {
  for (let i = 0; i < h; i++, c += 2) {
    const cos = cs[c]!, sin = cs[c + 1]!;
    const x = src[s + i]!, y = src[s + i + h]!;
    dst[o + i] = x * cos - y * sin;
    dst[o + i + h] = x * sin + y * cos;
  }
}

/** Pairs (2i, 2i + 1): llama2.c `v0·fcr − v1·fci, v0·fci + v1·fcr`. */
function rotateAdjacent(
  src: FloatArray,
  s: number,
  dst: FloatArray,
  o: number,
  cs: Float32Array | Float64Array,
  c: number,
  h: number,
): void {
  for (let i = 0; i < h; i++, c += 2) {
    const cos = cs[c]!, sin = cs[c + 1]!;
    const x = src[s + 2 * i]!, y = src[s + 2 * i + 1]!;
    dst[o + 2 * i] = x * cos - y * sin;
    dst[o + 2 * i + 1] = x * sin + y * cos;
  }
}
