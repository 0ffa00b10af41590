// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * Exact log-sum-exp merge of attention states over disjoint key sets.
 *
 * @module
 */

import { zeros } from "../tensor/tensor.ts";
import { describeValue } from "../tensor/validate.ts";
import type { AttentionState } from "./types.ts";

function checkPair(action: string, a: AttentionState, b: AttentionState, i: number): void {
  const sa = a.out.shape, sb = b.out.shape;
  if (sa.length !== 3 || sb.length !== 3 || sa.some((x, k) => x !== sb[k])) {
    throw new TypeError(
      `Cannot ${action}: states[${i}].out shape ${
        describeValue(sb)
      } must equal states[0].out shape ${describeValue(sa)}`,
    );
  }
  for (const s of [a, b]) {
    if (
      s.out.data.length !== sa[0]! * sa[1]! * sa[2]! || s.lse.data.length !== sa[0]! * sa[1]! ||
      s.out.offset !== 0 || s.lse.offset !== 0
    ) {
      throw new TypeError(
        `Cannot ${action}: states must be contiguous with out [tokens, heads, headDim] and lse [tokens, heads], got lse shape ${
          describeValue(s.lse.shape)
        }`,
      );
    }
  }
}

/**
 * Merges attention states computed over **disjoint** key sets into the state
 * over their union, exactly:
 *
 * ```
 * lse = log Σ_i exp(lse_i)
 * out = Σ_i exp(lse_i − lse) · out_i
 * ```
 *
 * This is what split-K decoding, dense + sparse halves (Squeezed Attention)
 * and memory + local attention need. States with `lse = -Infinity` (no keys)
 * carry no weight; if every state is empty the result is `out = 0`,
 * `lse = -Infinity`. The merge is associative and commutative up to f32
 * rounding.
 *
 * @see https://arxiv.org/abs/2205.14135 (FlashAttention's online softmax)
 * @param states One or more states with equal shapes.
 * @returns A new state.
 * @throws {TypeError} If `states` is empty or shapes differ.
 *
 * @example Split the keys in two, attend each half, merge: equals attending all
 * ```ts
 * import { denseAttention, mergeStates } from "@longctx/longctx/attention";
 * import { randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const query = randn([1, 2, 8], { seed: 1 });
 * const key = randn([10, 2, 8], { seed: 2 }), value = randn([10, 2, 8], { seed: 3 });
 * const whole = denseAttention({ query, key, value });
 * const a = denseAttention({ query, key: sliceAxis(key, 0, 0, 4), value: sliceAxis(value, 0, 0, 4) }, { causal: false });
 * const b = denseAttention({ query, key: sliceAxis(key, 0, 4, 10), value: sliceAxis(value, 0, 4, 10) }, { causal: false });
 * const merged = mergeStates([a, b]);
 * merged.out.data.forEach((x, i) => assert.ok(Math.abs(x - whole.out.data[i]) < 1e-5));
 * ```
 */
export function mergeStates(states: readonly AttentionState[]): AttentionState {
  if (!Array.isArray(states) || states.length === 0) {
    throw new TypeError(
      `Cannot merge attention states: states must be a non-empty array, got ${
        describeValue(states)
      }`,
    );
  }
  const first = states[0]!;
  const shape = first.out.shape;
  const result: AttentionState = {
    out: zeros("f32", shape, { layout: "thd" }),
    lse: zeros("f32", [shape[0]!, shape[1]!]),
  };
  mergeStatesInto(result, states);
  return result;
}

/**
 * {@linkcode mergeStates} into a caller-owned state, which may be one of the
 * inputs (in-place accumulation: `mergeStatesInto(acc, [acc, next])`).
 *
 * @param target Destination state (written), same shape as the inputs.
 * @param states One or more states over disjoint key sets.
 * @throws {TypeError} If shapes differ.
 *
 * @example Accumulating partial states in place
 * ```ts
 * import { denseAttention, mergeStatesInto } from "@longctx/longctx/attention";
 * import { randn, sliceAxis } from "@longctx/longctx/tensor";
 * import assert from "node:assert/strict";
 * const query = randn([1, 1, 4], { seed: 1 });
 * const key = randn([6, 1, 4], { seed: 2 }), value = randn([6, 1, 4], { seed: 3 });
 * const acc = denseAttention({ query, key: sliceAxis(key, 0, 0, 3), value: sliceAxis(value, 0, 0, 3) }, { causal: false });
 * const rest = denseAttention({ query, key: sliceAxis(key, 0, 3, 6), value: sliceAxis(value, 0, 3, 6) }, { causal: false });
 * mergeStatesInto(acc, [acc, rest]);
 * const whole = denseAttention({ query, key, value });
 * assert.ok(Math.abs(acc.lse.data[0] - whole.lse.data[0]) < 1e-5);
 * ```
 */
export function mergeStatesInto(target: AttentionState, states: readonly AttentionState[]): void {
  const action = "merge attention states";
  if (!Array.isArray(states) || states.length === 0) {
    throw new TypeError(
      `Cannot ${action}: states must be a non-empty array, got ${describeValue(states)}`,
    );
  }
  checkPair(action, target, states[0]!, 0);
  for (let i = 1; i < states.length; i++) checkPair(action, states[0]!, states[i]!, i);
  const [tokens, heads, d] = target.out.shape as [number, number, number];
  const rows = tokens * heads;
  const n = states.length;
  const to = target.out.data, tl = target.lse.data;
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let i = 0; i < n; i++) {
      const v = states[i]!.lse.data[r]!;
      if (v > mx) mx = v;
    }
    const o = r * d;
    if (mx === -Infinity) {
      to.fill(0, o, o + d);
      tl[r] = -Infinity;
      continue;
    }
    let sum = 0;
    for (let i = 0; i < n; i++) sum += Math.exp(states[i]!.lse.data[r]! - mx);
    // Weights first (target may alias an input), then one pass per element.
    for (let k = 0; k < d; k++) {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        const s = states[i]!;
        const lw = s.lse.data[r]!;
        if (lw === -Infinity) continue;
        acc += Math.exp(lw - mx) * s.out.data[o + k]!;
      }
      to[o + k] = acc / sum;
    }
    tl[r] = mx + Math.log(sum);
  }
}
