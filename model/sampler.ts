// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Next-token sampling as llama2.c's `run.c` does it: greedy argmax at
 * temperature 0, else softmax at a temperature followed by top-p (nucleus)
 * or plain multinomial sampling, driven by `run.c`'s xorshift* generator.
 *
 * @module
 */

import { describeValue, requireFinite } from "../tensor/validate.ts";

/** Options of {@linkcode Sampler}. */
export interface SamplerOptions {
  /** Softmax temperature; 0 is greedy argmax. @default {1} */
  temperature?: number;
  /** Nucleus mass; values outside `(0, 1)` sample from the whole distribution. @default {0.9} */
  topP?: number;
  /** Seed of the xorshift* generator (a non-zero integer below 2^53; 0 is replaced by 1). @default {1} */
  seed?: number;
}

const MASK64 = (1n << 64n) - 1n;
const MULT = 0x2545F4914F6CDD1Dn;

/**
 * `run.c`'s sampler. With the same seed and the same logits it draws the same
 * coins as `run.c` (`random_u32`: xorshift* on a 64-bit state; `random_f32`:
 * the top 24 bits over 2^24) and walks the same cumulative distributions, so
 * sampled text matches wherever the logits agree to float rounding.
 *
 * Top-p, as in `run.c`: tokens with probability below `(1 − p) / (n − 1)`
 * are dropped up front, the rest sorted by probability (descending), cut
 * after the cumulative mass first exceeds `p`, and sampled within that mass.
 *
 * | cost per call | |
 * | --- | --- |
 * | greedy | O(vocab) |
 * | sampling | O(vocab) softmax + O(m log m) sort of the m kept candidates |
 * | allocation | none after construction |
 *
 * @example Greedy picks the first maximum
 * ```ts
 * import { Sampler } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const s = new Sampler(4, { temperature: 0 });
 * assert.equal(s.sample(new Float32Array([0, 3, 3, 1])), 1);
 * ```
 *
 * @example Same seed, same draws
 * ```ts
 * import { Sampler } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const logits = new Float32Array([1, 2, 3, 4, 5]);
 * const a = new Sampler(5, { seed: 42 }), b = new Sampler(5, { seed: 42 });
 * const draws = Array.from({ length: 20 }, () => a.sample(logits));
 * assert.deepEqual(draws, Array.from({ length: 20 }, () => b.sample(logits)));
 * ```
 */
export class Sampler {
  /** Vocabulary size. */
  readonly vocabSize: number;
  /** Temperature (0 = greedy). */
  readonly temperature: number;
  /** Nucleus mass. */
  readonly topP: number;

  #state: bigint;
  #probs: Float64Array;
  #index: Int32Array;

  /**
   * Creates a sampler.
   *
   * @param vocabSize Logits per call.
   * @param options Temperature, top-p, seed.
   * @throws {RangeError} On a negative or non-finite temperature, a non-finite
   *   top-p, or a seed that is not a non-negative safe integer.
   */
  constructor(vocabSize: number, options: SamplerOptions = {}) {
    const action = "create Sampler";
    if (!Number.isSafeInteger(vocabSize) || vocabSize < 1) {
      throw new RangeError(
        `Cannot ${action}: vocabSize must be a positive integer, got ${describeValue(vocabSize)}`,
      );
    }
    this.vocabSize = vocabSize;
    this.temperature = requireFinite(action, "temperature", options.temperature ?? 1);
    if (this.temperature < 0) {
      throw new RangeError(
        `Cannot ${action}: temperature must be >= 0, got ${describeValue(this.temperature)}`,
      );
    }
    this.topP = requireFinite(action, "topP", options.topP ?? 0.9);
    const seed = options.seed ?? 1;
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new RangeError(
        `Cannot ${action}: seed must be a non-negative safe integer, got ${describeValue(seed)}`,
      );
    }
    this.#state = BigInt(seed === 0 ? 1 : seed);
    this.#probs = new Float64Array(vocabSize);
    this.#index = new Int32Array(vocabSize);
  }

  /**
   * `run.c`'s `random_u32()`: one xorshift* step, the top 32 bits.
   *
   * @returns An integer in `[0, 2^32)`.
   */
  nextU32(): number {
    let s = this.#state;
    s ^= s >> 12n;
    s = (s ^ (s << 25n)) & MASK64;
    s ^= s >> 27n;
    this.#state = s;
    return Number(((s * MULT) & MASK64) >> 32n);
  }

  /**
   * `run.c`'s `random_f32()`: a float in `[0, 1)` from the top 24 bits.
   *
   * @returns A number in `[0, 1)`.
   */
  nextF32(): number {
    return (this.nextU32() >>> 8) / 16777216;
  }

  /**
   * Picks the next token.
   *
   * @param logits Logits `[vocabSize]` (not modified).
   * @returns The token id.
   * @throws {TypeError} If `logits` has the wrong length.
   */
  sample(logits: ArrayLike<number>): number {
    const n = this.vocabSize;
    if (logits?.length !== n) {
      throw new TypeError(
        `Cannot sample: logits must have length ${n}, got ${describeValue(logits?.length)}`,
      );
    }
    if (this.temperature === 0) return argmax(logits);
    const p = this.#probs;
    let max = -Infinity;
    for (let i = 0; i < n; i++) max = Math.max(max, logits[i]! / this.temperature);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const e = Math.exp(logits[i]! / this.temperature - max);
      p[i] = e;
      sum += e;
    }
    for (let i = 0; i < n; i++) p[i]! /= sum;
    const coin = this.nextF32();
    if (this.topP <= 0 || this.topP >= 1) {
      let cdf = 0;
      for (let i = 0; i < n; i++) {
        cdf += p[i]!;
        if (coin < cdf) return i;
      }
      return n - 1;
    }
    // Top-p over the candidates above the cutoff, sorted by probability (descending).
    const cutoff = (1 - this.topP) / (n - 1);
    let m = 0;
    for (let i = 0; i < n; i++) if (p[i]! >= cutoff) this.#index[m++] = i;
    if (m === 0) return argmax(logits); // a near-uniform distribution with a tiny top-p
    const idx = this.#index.subarray(0, m);
    idx.sort((a, b) => p[b]! - p[a]! || a - b);
    let cum = 0, last = m - 1;
    for (let i = 0; i < m; i++) {
      cum += p[idx[i]!]!;
      if (cum > this.topP) {
        last = i;
        break;
      }
    }
    const r = coin * cum;
    let cdf = 0;
    for (let i = 0; i <= last; i++) {
      cdf += p[idx[i]!]!;
      if (r < cdf) return idx[i]!;
    }
    return idx[last]!;
  }
}

/**
 * Index of the largest value, the first on ties (as `run.c`'s `sample_argmax`).
 *
 * @param values Any numbers, length ≥ 1.
 * @returns The index.
 *
 * @example
 * ```ts
 * import { argmax } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * assert.equal(argmax([1, 5, 5, 2]), 1);
 * ```
 */
export function argmax(values: ArrayLike<number>): number {
  let best = 0, bestValue = values[0]!;
  for (let i = 1; i < values.length; i++) {
    if (values[i]! > bestValue) {
      bestValue = values[i]!;
      best = i;
    }
  }
  return best;
}
