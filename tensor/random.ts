// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Seeded pseudo-random numbers: the same seed gives the same stream on every
 * runtime, so tests and benchmarks are reproducible.
 *
 * @module
 */

import type { Tensor } from "./types.ts";
import { zeros } from "./tensor.ts";
import { requireFinite, requireInt } from "./validate.ts";

/**
 * A small, fast, seeded generator (xoshiro128**, seeded by splitmix32).
 * Uniform floats have 32 random bits; normals use the Box–Muller transform.
 *
 * @example Reproducible streams
 * ```ts
 * import { Rng } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const a = new Rng(42), b = new Rng(42);
 * assert.equal(a.uniform(), b.uniform());
 * assert.ok(a.int(10) < 10);
 * ```
 */
export class Rng {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;
  #spare = NaN;

  /**
   * Creates the stage from its options.
   *
   * @param seed Any integer; different seeds give independent-looking streams.
   * @throws {RangeError} If `seed` is not an integer.
   */
  constructor(seed: number) {
    requireInt("create Rng", "seed", seed);
    let x = (seed ^ 0x9e3779b9) >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#s0 = next();
    this.#s1 = next();
    this.#s2 = next();
    this.#s3 = next() | 1;
  }

  /**
   * Draws 32 random bits.
   *
   * @returns An unsigned 32-bit integer.
   */
  nextU32(): number {
    const s0 = this.#s0, s1 = this.#s1, s2 = this.#s2, s3 = this.#s3;
    const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    let n2 = s2 ^ s0;
    let n3 = s3 ^ s1;
    const n1 = s1 ^ n2;
    const n0 = s0 ^ n3;
    n2 ^= t;
    n3 = rotl(n3, 11);
    this.#s0 = n0 >>> 0;
    this.#s1 = n1 >>> 0;
    this.#s2 = n2 >>> 0;
    this.#s3 = n3 >>> 0;
    return r;
  }

  /**
   * Draws a uniform float.
   *
   * @returns A float in `[0, 1)`.
   */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /**
   * Draws a uniform integer.
   *
   * @param n Exclusive upper bound, a positive integer.
   * @returns A uniform integer in `[0, n)`.
   */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /**
   * Draws a standard normal sample.
   *
   * @returns A sample with mean 0 and standard deviation 1.
   */
  normal(): number {
    if (!Number.isNaN(this.#spare)) {
      const s = this.#spare;
      this.#spare = NaN;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /**
   * Fills an array with normal samples.
   *
   * @param out Array to fill (written).
   * @param mean Mean. @default {0}
   * @param std Standard deviation. @default {1}
   * @returns `out`.
   */
  fillNormal<A extends Float32Array | Float16Array | number[]>(out: A, mean = 0, std = 1): A {
    for (let i = 0; i < out.length; i++) out[i] = mean + std * this.normal();
    return out;
  }

  /**
   * Fills an array with uniform samples in `[low, high)`.
   *
   * @param out Array to fill (written).
   * @param low Lower bound. @default {0}
   * @param high Upper bound. @default {1}
   * @returns `out`.
   */
  fillUniform<A extends Float32Array | Float16Array | number[]>(out: A, low = 0, high = 1): A {
    for (let i = 0; i < out.length; i++) out[i] = low + (high - low) * this.uniform();
    return out;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Options for {@linkcode randn} and {@linkcode randu}. */
export interface RandomTensorOptions {
  /** Seed of a fresh {@linkcode Rng}; ignored when `rng` is given. @default {0} */
  seed?: number;
  /** Generator to draw from (advanced in place). */
  rng?: Rng;
  /** Element type, f32 or f16. @default {"f32"} */
  dtype?: "f32" | "f16";
  /** Named layout of the result. */
  layout?: "thd" | "htd" | "td";
}

/**
 * A tensor of normal samples.
 *
 * @param shape Extent of each axis.
 * @param options Seed or generator, mean/std, dtype, layout.
 * @returns A new contiguous tensor.
 *
 * @example Seeded queries, [tokens=4, heads=2, headDim=8]
 * ```ts
 * import { randn } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const a = randn([4, 2, 8], { seed: 1, layout: "thd" });
 * const b = randn([4, 2, 8], { seed: 1, layout: "thd" });
 * assert.deepEqual(a.data, b.data);
 * ```
 */
export function randn(
  shape: readonly number[],
  options: RandomTensorOptions & { mean?: number; std?: number } = {},
): Tensor<"f32" | "f16"> {
  const mean = requireFinite("create random tensor", "mean", options.mean ?? 0);
  const std = requireFinite("create random tensor", "std", options.std ?? 1);
  const rng = options.rng ?? new Rng(options.seed ?? 0);
  const t = zeros(options.dtype ?? "f32", shape, layoutOpt(options));
  rng.fillNormal(t.data, mean, std);
  return t;
}

/**
 * A tensor of uniform samples in `[low, high)`.
 *
 * @param shape Extent of each axis.
 * @param options Seed or generator, bounds, dtype, layout.
 * @returns A new contiguous tensor.
 *
 * @example
 * ```ts
 * import { randu } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const t = randu([100], { seed: 3, low: -1, high: 1 });
 * assert.ok(t.data.every((x) => x >= -1 && x < 1));
 * ```
 */
export function randu(
  shape: readonly number[],
  options: RandomTensorOptions & { low?: number; high?: number } = {},
): Tensor<"f32" | "f16"> {
  const low = requireFinite("create random tensor", "low", options.low ?? 0);
  const high = requireFinite("create random tensor", "high", options.high ?? 1);
  const rng = options.rng ?? new Rng(options.seed ?? 0);
  const t = zeros(options.dtype ?? "f32", shape, layoutOpt(options));
  rng.fillUniform(t.data, low, high);
  return t;
}

function layoutOpt(o: RandomTensorOptions): { layout?: "thd" | "htd" | "td" } {
  return o.layout !== undefined ? { layout: o.layout } : {};
}
