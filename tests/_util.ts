// Copyright 2026 the longctx authors. MIT license.
/** Test oracles and comparison helpers shared by test files. @module */

import type { Tensor } from "../tensor/types.ts";
import assert from "node:assert/strict";

/** Options of {@linkcode naiveAttention}. */
export interface NaiveOptions {
  causal?: boolean;
  scale?: number;
  softCap?: number;
  queryOffset?: number;
  keyOffset?: number;
  /** Extra mask: key j visible to (token t, head h) only if this returns true. */
  visible?: (t: number, h: number, j: number) => boolean;
}

function get(t: Tensor, i: number, j: number, k: number): number {
  return t.data[t.offset + i * t.strides[0]! + j * t.strides[1]! + k * t.strides[2]!]!;
}

/**
 * The three-loop formula, in f64: for each query token and head, scores over
 * visible keys, max-subtracted softmax, weighted value sum. Independent of the
 * kernels under test (no blocking, no online softmax).
 */
export function naiveAttention(
  query: Tensor,
  key: Tensor,
  value: Tensor,
  o: NaiveOptions = {},
): { out: Float64Array; lse: Float64Array } {
  const [tq, h, d] = query.shape as [number, number, number];
  const [tk, hkv] = key.shape as [number, number];
  const g = h / hkv;
  const scale = o.scale ?? 1 / Math.sqrt(d);
  const causal = o.causal ?? true;
  const ko = o.keyOffset ?? 0;
  const qo = o.queryOffset ?? ko + tk - tq;
  const out = new Float64Array(tq * h * d);
  const lse = new Float64Array(tq * h);
  for (let t = 0; t < tq; t++) {
    for (let hh = 0; hh < h; hh++) {
      const kh = Math.floor(hh / g);
      const s: number[] = [];
      const idx: number[] = [];
      for (let j = 0; j < tk; j++) {
        if (causal && ko + j > qo + t) continue;
        if (o.visible && !o.visible(t, hh, j)) continue;
        let dot = 0;
        for (let i = 0; i < d; i++) dot += get(query, t, hh, i) * get(key, j, kh, i);
        let x = dot * scale;
        if (o.softCap) x = o.softCap * Math.tanh(x / o.softCap);
        s.push(x);
        idx.push(j);
      }
      if (s.length === 0) {
        lse[t * h + hh] = -Infinity;
        continue;
      }
      const m = Math.max(...s);
      let sum = 0;
      for (const x of s) sum += Math.exp(x - m);
      for (let a = 0; a < s.length; a++) {
        const p = Math.exp(s[a]! - m) / sum;
        for (let i = 0; i < d; i++) out[(t * h + hh) * d + i]! += p * get(value, idx[a]!, kh, i);
      }
      lse[t * h + hh] = m + Math.log(sum);
    }
  }
  return { out, lse };
}

/**
 * Asserts `|actual − expected| ≤ atol + rtol·|expected|` elementwise, reporting
 * the first mismatching indices. Equal infinities match.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { atol = 1e-5, rtol = 1e-4, label = "" }: { atol?: number; rtol?: number; label?: string } = {},
): void {
  assert.equal(actual.length, expected.length, `${label} length`);
  const bad: string[] = [];
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (a === e) continue;
    const err = Math.abs(a - e);
    if (!(err <= atol + rtol * Math.abs(e))) {
      if (bad.length < 5) bad.push(`[${i}] got ${a}, expected ${e}`);
      worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
    }
  }
  if (bad.length > 0) {
    assert.fail(`${label} mismatch (max err ${worst}): ${bad.join("; ")}`);
  }
}

/** Largest |a − b| over two arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
