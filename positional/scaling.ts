// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Frequency scaling for RoPE: the inverse frequencies `θ_i` (one per rotated
 * pair `i` of `headDim / 2`) under Position Interpolation, NTK-aware scaling,
 * dynamic NTK, YaRN and a plain base change (ABF).
 *
 * Every formula follows Hugging Face transformers' `modeling_rope_utils.py`
 * (`_compute_default_rope_parameters`, `_compute_linear_scaling_rope_parameters`,
 * `_compute_ntk_parameters`, `_compute_dynamic_ntk_parameters`,
 * `_compute_yarn_parameters`), but is evaluated in float64 (transformers builds
 * `inv_freq` in float32), so values agree with it to float32 rounding.
 *
 * @module
 */

import { requireFinite, requirePositiveInt } from "../tensor/validate.ts";
import {
  checkBase,
  checkFactor,
  checkHeadDim,
  checkObject,
  checkScaling,
  checkYarnFields,
  orDefault,
  ROPE_BASE,
  YARN_BETA_FAST,
  YARN_BETA_SLOW,
} from "./_validate.ts";

/** The RoPE base (`rope_theta`) of RoFormer and Llama 1–2: 10000. */
export const DEFAULT_ROPE_BASE: number = ROPE_BASE;
/** YaRN `beta_fast` (32): pairs turning more than this many times over the trained context keep their frequency. */
export const DEFAULT_YARN_BETA_FAST: number = YARN_BETA_FAST;
/** YaRN `beta_slow` (1): pairs turning fewer than this many times over the trained context are interpolated. */
export const DEFAULT_YARN_BETA_SLOW: number = YARN_BETA_SLOW;

/** No scaling: plain RoPE with `θ_i = base^(-2i/headDim)`. */
export interface NoRopeScaling {
  /** Discriminant. */
  type: "none";
}

/**
 * Position Interpolation (PI): positions are divided by `factor`, or
 * equivalently every inverse frequency is, `θ'_i = θ_i / factor`.
 *
 * @see https://arxiv.org/abs/2306.15595
 */
export interface LinearRopeScaling {
  /** Discriminant. */
  type: "linear";
  /** Context extension ratio `s`, finite and `>= 1` (1 is plain RoPE). */
  factor: number;
}

/**
 * NTK-aware scaling (bloc97): the base grows so that the lowest frequency is
 * interpolated by `factor` while the highest is barely touched,
 * `base' = base · factor^(d / (d − 2))`.
 *
 * @see https://arxiv.org/abs/2309.00071 (YaRN, section 3.1, which formalises it)
 */
export interface NtkRopeScaling {
  /** Discriminant. */
  type: "ntk";
  /** Context extension ratio `s`, finite and `>= 1` (1 is plain RoPE). */
  factor: number;
}

/**
 * Dynamic NTK (emozilla), as in transformers: plain RoPE up to
 * `originalMaxPosition`; for a longer sequence of length `L` the base becomes
 * `base' = base · (factor · L / originalMaxPosition − (factor − 1))^(d / (d − 2))`.
 *
 * Note that `factor = 1` is plain RoPE only up to `originalMaxPosition`:
 * beyond it the ratio is `L / originalMaxPosition` and the base still grows.
 *
 * @see https://arxiv.org/abs/2309.00071 (YaRN, section 3.3)
 */
export interface DynamicNtkRopeScaling {
  /** Discriminant. */
  type: "dynamic-ntk";
  /** Scaling factor `s`, finite and `>= 1` (1 is plain RoPE). */
  factor: number;
  /** Context length the model was trained on (`max_position_embeddings`), a positive integer. */
  originalMaxPosition: number;
}

/**
 * YaRN: NTK-by-parts interpolation plus an attention temperature.
 *
 * Pairs that turn many times over the original context (high frequency) keep
 * their frequency, pairs that turn less than once are interpolated as in PI,
 * and a linear ramp blends the ones between (see {@linkcode yarnInvFreq}).
 * Queries and keys are then both scaled by `attentionFactor`
 * (`0.1 · ln(factor) + 1` by default, see {@linkcode yarnAttentionFactor}).
 *
 * @see https://arxiv.org/abs/2309.00071
 */
export interface YarnRopeScaling {
  /** Discriminant. */
  type: "yarn";
  /** Context extension ratio `s`, finite and `>= 1` (1 is plain RoPE). */
  factor: number;
  /** Context length the model was trained on (`original_max_position_embeddings`), a positive integer. */
  originalMaxPosition: number;
  /** Rotation count above which a pair is extrapolated (kept). @default {32} */
  betaFast?: number;
  /** Rotation count below which a pair is interpolated. Must be below `betaFast`. @default {1} */
  betaSlow?: number;
  /** DeepSeek `mscale`; used with `mscaleAllDim` for the ratio form of the attention factor. @default {undefined} */
  mscale?: number;
  /** DeepSeek `mscale_all_dim`; see {@linkcode yarnAttentionFactor}. @default {undefined} */
  mscaleAllDim?: number;
  /** Overrides the computed attention factor. @default {yarnAttentionFactor(this)} */
  attentionFactor?: number;
  /** Round the correction range outward to whole pairs (`floor`/`ceil`), as transformers does by default. @default {true} */
  truncate?: boolean;
}

/**
 * Base change, "adjusted base frequency" (ABF): `θ_i = newBase^(-2i/d)`, as in
 * Code Llama (1e6) and Llama 3 (5e5).
 *
 * @see https://arxiv.org/abs/2309.16039
 */
export interface BaseRopeScaling {
  /** Discriminant. */
  type: "base";
  /** The new base, finite and `> 1`. */
  base: number;
}

/**
 * How RoPE frequencies are rescaled to extend the context window.
 *
 * | type | inverse frequency `θ'_i` | attention factor |
 * | --- | --- | --- |
 * | `"none"` | `base^(-2i/d)` | 1 |
 * | `"linear"` (PI) | `base^(-2i/d) / s` | 1 |
 * | `"ntk"` | `(base · s^(d/(d−2)))^(-2i/d)` | 1 |
 * | `"dynamic-ntk"` | as `"ntk"` with `s → s·L/L₀ − (s−1)` when `L > L₀`, else plain | 1 |
 * | `"yarn"` | ramp between `base^(-2i/d)` and `base^(-2i/d) / s` | `0.1 ln s + 1` |
 * | `"base"` (ABF) | `newBase^(-2i/d)` | 1 |
 */
export type RopeScaling =
  | NoRopeScaling
  | LinearRopeScaling
  | NtkRopeScaling
  | DynamicNtkRopeScaling
  | YarnRopeScaling
  | BaseRopeScaling;

// ---------------------------------------------------------------------------
// Plain, PI and NTK.

/**
 * Inverse frequencies of plain RoPE: `θ_i = 1 / base^(2i / headDim)` for
 * `i = 0 … headDim/2 − 1`. Pair `i` at position `p` is rotated by `p · θ_i`.
 *
 * @see https://arxiv.org/abs/2104.09864 (RoFormer)
 *
 * @param headDim Rotated dimension `d`, a positive even integer.
 * @param base The RoPE base (`rope_theta`), finite and `> 1`. @default {10000}
 * @returns A new `Float64Array` of length `headDim / 2`, decreasing from `θ_0 = 1`.
 * @throws {RangeError} If `headDim` is not a positive even integer or `base <= 1`.
 *
 * @example Llama-style frequencies
 * ```ts
 * import { ropeInvFreq } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * const f = ropeInvFreq(4, 10000); // [1, 10000^(-1/2)]
 * assert.deepEqual(Array.from(f), [1, 0.01]);
 * ```
 */
export function ropeInvFreq(headDim: number, base: number = DEFAULT_ROPE_BASE): Float64Array {
  const action = "compute RoPE inverse frequencies";
  checkHeadDim(action, headDim);
  checkBase(action, "base", base);
  return plainInvFreq(headDim, base);
}

/** θ_i = 1 / base^(2i/d), unvalidated. */
function plainInvFreq(d: number, base: number): Float64Array {
  const out = new Float64Array(d / 2);
  for (let i = 0; i < out.length; i++) out[i] = 1 / Math.pow(base, (2 * i) / d);
  return out;
}

/** Options of the frequency functions that take a scaling factor. */
export interface ScaledInvFreqOptions {
  /** The RoPE base (`rope_theta`), finite and `> 1`. @default {10000} */
  base?: number;
  /** Context extension ratio `s`, finite and `>= 1`. */
  factor: number;
}

/**
 * Position Interpolation: `θ'_i = θ_i / factor`, which rotates position `p`
 * exactly as plain RoPE rotates `p / factor`, squeezing `factor ×` the trained
 * context into the trained angle range.
 *
 * @see https://arxiv.org/abs/2306.15595
 *
 * @param headDim Rotated dimension `d`, a positive even integer.
 * @param options `factor` (`>= 1`) and `base`.
 * @returns A new `Float64Array` of length `headDim / 2`.
 * @throws {RangeError} On a bad `headDim`, `base <= 1`, or `factor < 1` / non-finite.
 *
 * @example Factor 4 divides every frequency by 4
 * ```ts
 * import { linearInvFreq, ropeInvFreq } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * const pi = linearInvFreq(8, { factor: 4 });
 * const plain = ropeInvFreq(8);
 * assert.deepEqual(Array.from(pi), Array.from(plain, (f) => f / 4));
 * ```
 */
export function linearInvFreq(headDim: number, options: ScaledInvFreqOptions): Float64Array {
  const action = "compute PI inverse frequencies";
  checkHeadDim(action, headDim);
  checkObject(action, "options", options);
  const base = checkBase(action, "base", orDefault(options.base, DEFAULT_ROPE_BASE));
  const factor = checkFactor(action, "factor", options.factor);
  const out = plainInvFreq(headDim, base);
  for (let i = 0; i < out.length; i++) out[i]! /= factor;
  return out;
}

/**
 * The NTK-aware base, `base · factor^(d / (d − 2))`: chosen so that the lowest
 * frequency `θ_{d/2−1}` becomes exactly `θ_{d/2−1} / factor` (interpolated as
 * in PI) while `θ_0 = 1` is unchanged (extrapolated).
 *
 * With `headDim = 2` the only frequency is `θ_0 = 1` whatever the base, so the
 * base is returned unchanged (the exponent `d / (d − 2)` would be infinite).
 *
 * @see https://arxiv.org/abs/2309.00071 (YaRN, section 3.1)
 *
 * @param headDim Rotated dimension `d`, a positive even integer.
 * @param options `factor` (`>= 1`) and `base`.
 * @returns The scaled base.
 * @throws {RangeError} On a bad `headDim`, `base <= 1`, or `factor < 1` / non-finite.
 *
 * @example Code-Llama-like numbers
 * ```ts
 * import { ntkBase } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * assert.equal(ntkBase(128, { factor: 1 }), 10000);
 * assert.equal(ntkBase(4, { base: 100, factor: 3 }), 100 * 3 ** 2);
 * ```
 */
export function ntkBase(headDim: number, options: ScaledInvFreqOptions): number {
  const action = "compute NTK-aware base";
  checkHeadDim(action, headDim);
  checkObject(action, "options", options);
  const base = checkBase(action, "base", orDefault(options.base, DEFAULT_ROPE_BASE));
  const factor = checkFactor(action, "factor", options.factor);
  return scaleBase(headDim, base, factor);
}

/** base · r^(d/(d−2)), with the d = 2 case (frequency independent of base) kept finite. */
function scaleBase(d: number, base: number, ratio: number): number {
  if (d === 2 || ratio === 1) return base;
  return base * Math.pow(ratio, d / (d - 2));
}

/**
 * NTK-aware inverse frequencies: plain RoPE with the base of {@linkcode ntkBase}.
 *
 * @see https://arxiv.org/abs/2309.00071 (YaRN, section 3.1)
 *
 * @param headDim Rotated dimension `d`, a positive even integer.
 * @param options `factor` (`>= 1`) and `base`.
 * @returns A new `Float64Array` of length `headDim / 2`.
 * @throws {RangeError} On a bad `headDim`, `base <= 1`, or `factor < 1` / non-finite.
 *
 * @example The lowest frequency is interpolated by the factor, the highest kept
 * ```ts
 * import { ntkInvFreq, ropeInvFreq } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * const ntk = ntkInvFreq(16, { factor: 8 });
 * const plain = ropeInvFreq(16);
 * assert.equal(ntk[0], 1);
 * assert.ok(Math.abs(ntk[7] / (plain[7] / 8) - 1) < 1e-12);
 * ```
 */
export function ntkInvFreq(headDim: number, options: ScaledInvFreqOptions): Float64Array {
  return plainInvFreq(headDim, ntkBase(headDim, options));
}

/** Options of {@linkcode dynamicNtkBase} and {@linkcode dynamicNtkInvFreq}. */
export interface DynamicNtkOptions extends ScaledInvFreqOptions {
  /** Trained context length `L₀`, a positive integer. */
  originalMaxPosition: number;
  /** Current sequence length `L`, a positive integer. */
  sequenceLength: number;
}

/**
 * The dynamic-NTK base for a sequence of length `L` (transformers
 * `_compute_dynamic_ntk_parameters`): `base` while `L <= L₀`, otherwise
 * `base · (factor · L / L₀ − (factor − 1))^(d / (d − 2))`. The ratio inside the
 * power is 1 at `L = L₀` and grows linearly with `L` (it is `2·factor − 1` at
 * `L = 2·L₀`), so the base changes continuously and never shrinks.
 *
 * @see https://arxiv.org/abs/2309.00071 (YaRN, section 3.3)
 *
 * @param headDim Rotated dimension `d`, a positive even integer.
 * @param options `factor`, `originalMaxPosition`, `sequenceLength`, `base`.
 * @returns The base in force for that length.
 * @throws {RangeError} On a bad `headDim`, `base`, `factor`, or non-positive-integer lengths.
 *
 * @example Unchanged inside the trained window, larger beyond it
 * ```ts
 * import { dynamicNtkBase } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * const o = { factor: 2, originalMaxPosition: 4096 };
 * assert.equal(dynamicNtkBase(4, { ...o, sequenceLength: 4096 }), 10000);
 * assert.equal(dynamicNtkBase(4, { ...o, sequenceLength: 8192 }), 10000 * 3 ** 2);
 * ```
 */
export function dynamicNtkBase(headDim: number, options: DynamicNtkOptions): number {
  const action = "compute dynamic NTK base";
  checkHeadDim(action, headDim);
  checkObject(action, "options", options);
  const base = checkBase(action, "base", orDefault(options.base, DEFAULT_ROPE_BASE));
  const factor = checkFactor(action, "factor", options.factor);
  const original = requirePositiveInt(action, "originalMaxPosition", options.originalMaxPosition);
  const length = requirePositiveInt(action, "sequenceLength", options.sequenceLength);
  return dynamicBase(headDim, base, factor, original, length);
}

/** Unvalidated dynamic-NTK base. */
function dynamicBase(
  d: number,
  base: number,
  factor: number,
  original: number,
  length: number,
): number {
  if (length <= original) return base;
  return scaleBase(d, base, (factor * length) / original - (factor - 1));
}

/**
 * Dynamic-NTK inverse frequencies for a sequence of length `L`: plain RoPE with
 * the base of {@linkcode dynamicNtkBase}.
 *
 * @see https://arxiv.org/abs/2309.00071 (YaRN, section 3.3)
 *
 * @param headDim Rotated dimension `d`, a positive even integer.
 * @param options `factor`, `originalMaxPosition`, `sequenceLength`, `base`.
 * @returns A new `Float64Array` of length `headDim / 2`.
 * @throws {RangeError} As {@linkcode dynamicNtkBase}.
 *
 * @example Equal to plain RoPE up to the trained length
 * ```ts
 * import { dynamicNtkInvFreq, ropeInvFreq } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * const f = dynamicNtkInvFreq(8, { factor: 4, originalMaxPosition: 2048, sequenceLength: 100 });
 * assert.deepEqual(f, ropeInvFreq(8));
 * ```
 */
export function dynamicNtkInvFreq(headDim: number, options: DynamicNtkOptions): Float64Array {
  return plainInvFreq(headDim, dynamicNtkBase(headDim, options));
}

// ---------------------------------------------------------------------------
// YaRN.

/** Options of {@linkcode yarnCorrectionRange}, {@linkcode yarnRamp} and {@linkcode yarnInvFreq}. */
export interface YarnOptions {
  /** The RoPE base (`rope_theta`), finite and `> 1`. @default {10000} */
  base?: number;
  /** Context extension ratio `s`, finite and `>= 1`. */
  factor: number;
  /** Trained context length `L₀`, a positive integer. */
  originalMaxPosition: number;
  /** Rotation count above which a pair is kept. @default {32} */
  betaFast?: number;
  /** Rotation count below which a pair is interpolated; below `betaFast`. @default {1} */
  betaSlow?: number;
  /** Round the range outward with `floor`/`ceil`. @default {true} */
  truncate?: boolean;
}

/**
 * The pair index (possibly fractional) whose wavelength fits `rotations` full
 * turns into `L₀` positions (transformers `find_correction_dim`):
 * `d · ln(L₀ / (2π · rotations)) / (2 · ln base)`.
 */
function correctionDim(d: number, base: number, original: number, rotations: number): number {
  return (d * Math.log(original / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
}

/**
 * YaRN's correction range `[low, high]` (transformers `find_correction_range`):
 * pairs with index `< low` turn more than `betaFast` times over the trained
 * context and are kept; pairs with index `> high` turn fewer than `betaSlow`
 * times and are interpolated. `low = max(floor(dim(betaFast)), 0)`,
 * `high = min(ceil(dim(betaSlow)), d − 1)` where
 * `dim(r) = d · ln(L₀ / (2π r)) / (2 ln base)` (no rounding when `truncate` is false).
 * The upper clamp is `d − 1`, as in transformers, although pair indices stop at `d/2 − 1`.
 *
 * @see https://arxiv.org/abs/2309.00071 (section 3.2, "NTK-by-parts")
 *
 * @param headDim Rotated dimension `d`, a positive even integer.
 * @param options Base, factor, trained length and the two betas.
 * @returns `[low, high]`, pair indices.
 * @throws {RangeError} On invalid options (see {@linkcode YarnOptions}).
 *
 * @example Llama 2 numbers: d = 128, base 1e4, L₀ = 4096
 * ```ts
 * import { yarnCorrectionRange } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * assert.deepEqual(yarnCorrectionRange(128, { factor: 16, originalMaxPosition: 4096 }), [20, 46]);
 * ```
 */
export function yarnCorrectionRange(headDim: number, options: YarnOptions): [number, number] {
  const y = checkYarnOptions("compute YaRN correction range", headDim, options);
  return correctionRange(headDim, y);
}

interface ResolvedYarn {
  base: number;
  factor: number;
  original: number;
  betaFast: number;
  betaSlow: number;
  truncate: boolean;
}

function checkYarnOptions(action: string, headDim: number, o: YarnOptions): ResolvedYarn {
  checkHeadDim(action, headDim);
  checkObject(action, "options", o);
  const base = checkBase(action, "base", orDefault(o.base, DEFAULT_ROPE_BASE));
  checkYarnFields(action, "", o as unknown as Record<string, unknown>);
  return resolveYarn(base, o);
}

function resolveYarn(base: number, o: YarnOptions): ResolvedYarn {
  return {
    base,
    factor: o.factor,
    original: o.originalMaxPosition,
    betaFast: o.betaFast ?? DEFAULT_YARN_BETA_FAST,
    betaSlow: o.betaSlow ?? DEFAULT_YARN_BETA_SLOW,
    truncate: o.truncate ?? true,
  };
}

function correctionRange(d: number, y: ResolvedYarn): [number, number] {
  let low = correctionDim(d, y.base, y.original, y.betaFast);
  let high = correctionDim(d, y.base, y.original, y.betaSlow);
  if (y.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  // `+ 0` turns the -0 of Math.ceil(-0.2) into 0.
  return [Math.max(low, 0), Math.min(high, d - 1) + 0];
}

/**
 * YaRN's per-pair interpolation weight: `γ_i = clamp((i − low) / (high − low), 0, 1)`
 * for `i = 0 … d/2 − 1`, with `high += 0.001` when `low == high` (transformers
 * `linear_ramp_factor`). `γ = 0` keeps the plain frequency (extrapolation),
 * `γ = 1` divides it by `factor` (interpolation); transformers names `1 − γ`
 * `inv_freq_extrapolation_factor`.
 *
 * @see https://arxiv.org/abs/2309.00071 (section 3.2)
 *
 * @param headDim Rotated dimension `d`, a positive even integer.
 * @param options Base, factor, trained length and the two betas.
 * @returns A new `Float64Array` of length `headDim / 2` with values in `[0, 1]`, non-decreasing.
 * @throws {RangeError} On invalid options (see {@linkcode YarnOptions}).
 *
 * @example Zero for fast pairs, one for slow pairs
 * ```ts
 * import { yarnRamp } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * const g = yarnRamp(128, { factor: 16, originalMaxPosition: 4096 }); // range [20, 46]
 * assert.equal(g[20], 0);
 * assert.equal(g[33], 0.5);
 * assert.equal(g[46], 1);
 * ```
 */
export function yarnRamp(headDim: number, options: YarnOptions): Float64Array {
  const y = checkYarnOptions("compute YaRN ramp", headDim, options);
  return ramp(headDim, y);
}

function ramp(d: number, y: ResolvedYarn): Float64Array {
  const [low, rawHigh] = correctionRange(d, y);
  const high = low === rawHigh ? rawHigh + 0.001 : rawHigh;
  const out = new Float64Array(d / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = Math.min(1, Math.max(0, (i - low) / (high - low)));
  }
  return out;
}

/**
 * YaRN inverse frequencies ("NTK-by-parts"): each pair blends its plain
 * frequency `θ_i` (extrapolation) with the PI frequency `θ_i / factor`
 * (interpolation) by the ramp `γ_i` of {@linkcode yarnRamp}:
 * `θ'_i = θ_i/s · γ_i + θ_i · (1 − γ_i)`. Computed as
 * `θ_i/s + (θ_i − θ_i/s) · (1 − γ_i)`, which is exactly `θ_i` when `s = 1`
 * and differs from transformers' arrangement by at most a rounding step otherwise.
 *
 * @see https://arxiv.org/abs/2309.00071 (section 3.2)
 *
 * @param headDim Rotated dimension `d`, a positive even integer.
 * @param options Base, factor, trained length and the two betas.
 * @returns A new `Float64Array` of length `headDim / 2`.
 * @throws {RangeError} On invalid options (see {@linkcode YarnOptions}).
 *
 * @example High-frequency pairs keep θ_i, low-frequency pairs get θ_i / s
 * ```ts
 * import { ropeInvFreq, yarnInvFreq } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * const yarn = yarnInvFreq(128, { factor: 16, originalMaxPosition: 4096 });
 * const plain = ropeInvFreq(128);
 * assert.equal(yarn[0], plain[0]);
 * assert.equal(yarn[63], plain[63] / 16);
 * ```
 */
export function yarnInvFreq(headDim: number, options: YarnOptions): Float64Array {
  const y = checkYarnOptions("compute YaRN inverse frequencies", headDim, options);
  return yarnFreq(headDim, y);
}

function yarnFreq(d: number, y: ResolvedYarn): Float64Array {
  const gamma = ramp(d, y);
  const out = plainInvFreq(d, y.base);
  for (let i = 0; i < out.length; i++) {
    const extrapolated = out[i]!;
    const interpolated = extrapolated / y.factor;
    out[i] = interpolated + (extrapolated - interpolated) * (1 - gamma[i]!);
  }
  return out;
}

/**
 * YaRN's attention temperature term (transformers `get_mscale`):
 * `0.1 · mscale · ln(scale) + 1` for `scale > 1`, else 1.
 *
 * @see https://arxiv.org/abs/2309.00071 (section 3.4, `sqrt(1/t) = 0.1 ln s + 1`)
 *
 * @param scale Context extension ratio `s`, finite.
 * @param mscale Multiplier of the log term. @default {1}
 * @returns The multiplier.
 * @throws {RangeError} If an argument is not finite.
 *
 * @example
 * ```ts
 * import { yarnMscale } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * assert.equal(yarnMscale(1), 1);
 * assert.equal(yarnMscale(Math.E), 1.1);
 * ```
 */
export function yarnMscale(scale: number, mscale: number = 1): number {
  const action = "compute YaRN mscale";
  requireFinite(action, "scale", scale);
  requireFinite(action, "mscale", mscale);
  return mscaleOf(scale, mscale);
}

function mscaleOf(scale: number, mscale: number): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

/** Options of {@linkcode yarnAttentionFactor}. */
export interface YarnAttentionFactorOptions {
  /** Context extension ratio `s`, finite and `>= 1`. */
  factor: number;
  /** DeepSeek `mscale`. @default {undefined} */
  mscale?: number;
  /** DeepSeek `mscale_all_dim`. @default {undefined} */
  mscaleAllDim?: number;
  /** Explicit value, returned as is. @default {undefined} */
  attentionFactor?: number;
}

/**
 * The factor YaRN multiplies both queries and keys by (transformers
 * `attention_factor`, applied there to `cos` and `sin`), so logits are scaled
 * by its square, `1/t`:
 *
 * - `attentionFactor` when given;
 * - `mscale(s, mscale) / mscale(s, mscaleAllDim)` when both `mscale` and
 *   `mscaleAllDim` are given and non-zero (DeepSeek-V2/V3);
 * - `mscale(s) = 0.1 · ln(s) + 1` otherwise (the paper's recommendation).
 *
 * @see https://arxiv.org/abs/2309.00071 (section 3.4)
 *
 * @param options The factor and the optional DeepSeek terms.
 * @returns The multiplier for q and k (1 when `factor` is 1).
 * @throws {RangeError} If `factor < 1` or a term is not finite.
 *
 * @example Paper default and DeepSeek ratio
 * ```ts
 * import { yarnAttentionFactor } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * assert.equal(yarnAttentionFactor({ factor: 16 }), 0.1 * Math.log(16) + 1);
 * assert.equal(yarnAttentionFactor({ factor: 40, mscale: 1, mscaleAllDim: 1 }), 1);
 * ```
 */
export function yarnAttentionFactor(options: YarnAttentionFactorOptions): number {
  const action = "compute YaRN attention factor";
  checkObject(action, "options", options);
  const factor = checkFactor(action, "factor", options.factor);
  if (options.attentionFactor !== undefined) {
    return requireFinite(action, "attentionFactor", options.attentionFactor, { positive: true });
  }
  const m = options.mscale === undefined
    ? undefined
    : requireFinite(action, "mscale", options.mscale);
  const all = options.mscaleAllDim === undefined
    ? undefined
    : requireFinite(action, "mscaleAllDim", options.mscaleAllDim);
  if (m && all) return mscaleOf(factor, m) / mscaleOf(factor, all);
  return mscaleOf(factor, 1);
}

// ---------------------------------------------------------------------------
// All types at once.

/** Options of {@linkcode ropeParameters}. */
export interface RopeParametersOptions {
  /** The RoPE base (`rope_theta`), finite and `> 1`. @default {10000} */
  base?: number;
  /** Frequency scaling. @default {{ type: "none" }} */
  scaling?: RopeScaling;
  /**
   * Sequence length for `"dynamic-ntk"` (ignored by the other types), a positive integer.
   * @default {scaling.originalMaxPosition}
   */
  sequenceLength?: number;
}

/** Resolved RoPE frequencies, the result of {@linkcode ropeParameters}. */
export interface RopeParameters {
  /** Inverse frequencies `θ'_i`, length `headDim / 2`. */
  invFreq: Float64Array;
  /** Multiplier for both q and k (YaRN; 1 for every other type). */
  attentionFactor: number;
  /** The base the frequencies follow: scaled for `"ntk"`/`"dynamic-ntk"`, replaced for `"base"`, else unchanged. */
  base: number;
}

/**
 * Inverse frequencies and attention factor for any {@linkcode RopeScaling}
 * (transformers `ROPE_INIT_FUNCTIONS[type](config, device, seq_len)`).
 *
 * @param headDim Rotated dimension `d`, a positive even integer.
 * @param options Base, scaling and, for dynamic NTK, the sequence length.
 * @returns `{ invFreq: [headDim/2], attentionFactor, base }`.
 * @throws {TypeError} If `scaling` is not an object or its `type` is unknown.
 * @throws {RangeError} On out-of-range numbers (see each scaling type).
 *
 * @example YaRN with factor 4
 * ```ts
 * import { ropeParameters } from "@longctx/longctx/positional";
 * import assert from "node:assert/strict";
 * const p = ropeParameters(64, { scaling: { type: "yarn", factor: 4, originalMaxPosition: 2048 } });
 * assert.equal(p.invFreq.length, 32);
 * assert.equal(p.attentionFactor, 0.1 * Math.log(4) + 1);
 * ```
 */
export function ropeParameters(
  headDim: number,
  options: RopeParametersOptions = {},
): RopeParameters {
  const action = "compute RoPE parameters";
  checkObject(action, "options", options);
  const d = checkHeadDim(action, headDim);
  const base = checkBase(action, "base", orDefault(options.base, DEFAULT_ROPE_BASE));
  const scaling = checkScaling(action, "scaling", orDefault(options.scaling, { type: "none" }));
  if (options.sequenceLength !== undefined) {
    requirePositiveInt(action, "sequenceLength", options.sequenceLength);
  }
  switch (scaling.type) {
    case "none":
      return { invFreq: plainInvFreq(d, base), attentionFactor: 1, base };
    case "linear": {
      const invFreq = plainInvFreq(d, base);
      for (let i = 0; i < invFreq.length; i++) invFreq[i]! /= scaling.factor;
      return { invFreq, attentionFactor: 1, base };
    }
    case "ntk": {
      const b = scaleBase(d, base, scaling.factor);
      return { invFreq: plainInvFreq(d, b), attentionFactor: 1, base: b };
    }
    case "dynamic-ntk": {
      const length = options.sequenceLength ?? scaling.originalMaxPosition;
      const b = dynamicBase(d, base, scaling.factor, scaling.originalMaxPosition, length);
      return { invFreq: plainInvFreq(d, b), attentionFactor: 1, base: b };
    }
    case "yarn": {
      const y = resolveYarn(base, scaling);
      return {
        invFreq: yarnFreq(d, y),
        attentionFactor: yarnAttentionFactor(scaling),
        base,
      };
    }
    case "base":
      return { invFreq: plainInvFreq(d, scaling.base), attentionFactor: 1, base: scaling.base };
  }
}
