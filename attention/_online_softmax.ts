// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * The inner loop every CPU attention kernel shares: an online (flash-style)
 * softmax over one contiguous run of key rows, for a group of query rows that
 * read the same KV head (a GQA group, times a tile of query tokens).
 *
 * Private: the public kernels (`denseAttention`, `sparseAttend`) own the
 * workspaces and the validation; this file only computes.
 *
 * State per query row r (kept by the caller across runs):
 *   m[r]            running max of the logits seen
 *   l[r]            running sum of exp(logit − m[r])
 *   acc[r·d .. ]    running sum of exp(logit − m[r]) · value
 * Finishing a row: out = acc / l, lse = m + ln l (or out 0, lse −∞ when l = 0).
 *
 * @module
 */

/** Keys per block: scores for a block are computed, then exponentiated once. */
export const KEY_BLOCK = 64;

/** Workspace of one row group. Sized by {@linkcode ensureGroupWorkspace}; reused across calls. */
export interface GroupWorkspace {
  /** Query rows, [rows, headDim] contiguous f32. */
  q: Float32Array;
  /** Scores / probabilities of the current block, [rows, KEY_BLOCK]. */
  s: Float32Array;
  /** Running max per row, [rows]. */
  m: Float64Array;
  /** Running denominator per row, [rows]. */
  l: Float64Array;
  /** Running numerator per row, [rows, headDim]. */
  acc: Float32Array;
  /** Keys of this run visible to each row (a prefix: causal), [rows]. */
  visible: Int32Array;
}

let shared: GroupWorkspace | undefined;

/**
 * Returns the module's shared workspace, grown to hold `rows × headDim`.
 * Kernels are synchronous, so one workspace per module is safe; it only
 * reallocates when a larger problem arrives.
 */
export function ensureGroupWorkspace(rows: number, headDim: number): GroupWorkspace {
  const w = shared;
  if (
    w !== undefined && w.q.length >= rows * headDim && w.m.length >= rows
  ) return w;
  const r = Math.max(rows, w?.m.length ?? 0);
  const d = Math.max(headDim, w ? w.q.length / w.m.length : 0);
  shared = {
    q: new Float32Array(r * d),
    s: new Float32Array(r * KEY_BLOCK),
    m: new Float64Array(r),
    l: new Float64Array(r),
    acc: new Float32Array(r * d),
    visible: new Int32Array(r),
  };
  return shared;
}

/** Resets the running state of `rows` rows. */
export function resetRows(w: GroupWorkspace, rows: number, headDim: number): void {
  w.m.fill(-Infinity, 0, rows);
  w.l.fill(0, 0, rows);
  w.acc.fill(0, 0, rows * headDim);
}

/**
 * Folds one run of `count` keys/values into the running state of `rows` query rows.
 *
 * Key j of the run is `keys[kOff + j·kStride .. + headDim]`, value j is
 * `values[vOff + j·vStride ..]`. Row r sees keys `[0, w.visible[r])` of the run (clamped to
 * `count`); rows with nothing visible are untouched.
 *
 * @param scale Multiplies q·k.
 * @param softCap If > 0, logits become `softCap · tanh(logit / softCap)`.
 */
export function foldRun(
  w: GroupWorkspace,
  rows: number,
  headDim: number,
  keys: Float32Array | Float16Array,
  kOff: number,
  values: Float32Array | Float16Array,
  vOff: number,
  kStride: number,
  vStride: number,
  count: number,
  scale: number,
  softCap: number,
): void {
  const { q, s, m, l, acc, visible } = w;
  const d = headDim;
  const d4 = d - (d & 3);
  let maxVisible = 0;
  for (let r = 0; r < rows; r++) if (visible[r]! > maxVisible) maxVisible = visible[r]!;
  const end = Math.min(count, maxVisible);
  for (let b0 = 0; b0 < end; b0 += KEY_BLOCK) {
    const bn = Math.min(KEY_BLOCK, end - b0);
    // 1. Scores s[r, j] = scale · q_r · k_{b0+j} for visible pairs. Each key row is read
    //    once for four query rows at a time (the GQA group shares the KV head).
    for (let j = 0; j < bn; j++) {
      const ko = kOff + (b0 + j) * kStride;
      const kj = b0 + j;
      let r = 0;
      for (; r + 4 <= rows; r += 4) {
        if (
          kj >= visible[r]! || kj >= visible[r + 1]! || kj >= visible[r + 2]! ||
          kj >= visible[r + 3]!
        ) break;
        const q0 = r * d, q1 = q0 + d, q2 = q1 + d, q3 = q2 + d;
        let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (let i = 0; i < d; i++) {
          const kv = keys[ko + i]!;
          a0 += q[q0 + i]! * kv;
          a1 += q[q1 + i]! * kv;
          a2 += q[q2 + i]! * kv;
          a3 += q[q3 + i]! * kv;
        }
        s[r * KEY_BLOCK + j] = cap(a0 * scale, softCap);
        s[(r + 1) * KEY_BLOCK + j] = cap(a1 * scale, softCap);
        s[(r + 2) * KEY_BLOCK + j] = cap(a2 * scale, softCap);
        s[(r + 3) * KEY_BLOCK + j] = cap(a3 * scale, softCap);
      }
      for (; r < rows; r++) {
        if (kj >= visible[r]!) continue;
        const qo = r * d;
        let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        let i = 0;
        for (; i < d4; i += 4) {
          a0 += q[qo + i]! * keys[ko + i]!;
          a1 += q[qo + i + 1]! * keys[ko + i + 1]!;
          a2 += q[qo + i + 2]! * keys[ko + i + 2]!;
          a3 += q[qo + i + 3]! * keys[ko + i + 3]!;
        }
        for (; i < d; i++) a0 += q[qo + i]! * keys[ko + i]!;
        s[r * KEY_BLOCK + j] = cap((a0 + a1 + a2 + a3) * scale, softCap);
      }
    }
    // 2. Online softmax update per row: new max, rescale, exponentiate in place.
    let allFull = true;
    for (let r = 0; r < rows; r++) {
      const nv = Math.min(bn, visible[r]! - b0);
      if (nv < bn) allFull = false;
      if (nv <= 0) continue;
      const so = r * KEY_BLOCK;
      let mx = -Infinity;
      for (let j = 0; j < nv; j++) if (s[so + j]! > mx) mx = s[so + j]!;
      const mOld = m[r]!;
      if (mx > mOld) {
        if (mOld !== -Infinity) {
          const alpha = Math.exp(mOld - mx);
          l[r] = l[r]! * alpha;
          const ao = r * d;
          for (let i = 0; i < d; i++) acc[ao + i] = acc[ao + i]! * alpha;
        }
        m[r] = mx;
      }
      const mr = m[r]!;
      let sum = 0;
      for (let j = 0; j < nv; j++) {
        const p = Math.exp(s[so + j]! - mr);
        s[so + j] = p;
        sum += p;
      }
      l[r] = l[r]! + sum;
    }
    // 3. acc_r += Σ_j p[r, j] · v_j. Each value row is read once for four rows at a time.
    for (let j = 0; j < bn; j++) {
      const vo = vOff + (b0 + j) * vStride;
      const kj = b0 + j;
      let r = 0;
      for (; r + 4 <= rows; r += 4) {
        if (
          !allFull && (kj >= visible[r]! || kj >= visible[r + 1]! || kj >= visible[r + 2]! ||
            kj >= visible[r + 3]!)
        ) break;
        const p0 = s[r * KEY_BLOCK + j]!, p1 = s[(r + 1) * KEY_BLOCK + j]!;
        const p2 = s[(r + 2) * KEY_BLOCK + j]!, p3 = s[(r + 3) * KEY_BLOCK + j]!;
        const o0 = r * d, o1 = o0 + d, o2 = o1 + d, o3 = o2 + d;
        for (let i = 0; i < d; i++) {
          const vv = values[vo + i]!;
          acc[o0 + i] = acc[o0 + i]! + p0 * vv;
          acc[o1 + i] = acc[o1 + i]! + p1 * vv;
          acc[o2 + i] = acc[o2 + i]! + p2 * vv;
          acc[o3 + i] = acc[o3 + i]! + p3 * vv;
        }
      }
      for (; r < rows; r++) {
        if (!allFull && kj >= visible[r]!) continue;
        const p = s[r * KEY_BLOCK + j]!;
        const ao = r * d;
        let i = 0;
        for (; i < d4; i += 4) {
          acc[ao + i] = acc[ao + i]! + p * values[vo + i]!;
          acc[ao + i + 1] = acc[ao + i + 1]! + p * values[vo + i + 1]!;
          acc[ao + i + 2] = acc[ao + i + 2]! + p * values[vo + i + 2]!;
          acc[ao + i + 3] = acc[ao + i + 3]! + p * values[vo + i + 3]!;
        }
        for (; i < d; i++) acc[ao + i] = acc[ao + i]! + p * values[vo + i]!;
      }
    }
  }
}

function cap(x: number, softCap: number): number {
  return softCap > 0 ? softCap * Math.tanh(x / softCap) : x;
}

/**
 * Writes the finished rows: `out[outOff[r] ..] = acc_r / l_r`, `lse[lseOff[r]] = m_r + ln l_r`;
 * a row with `l = 0` gets zeros and `-Infinity`.
 */
export function finishRows(
  w: GroupWorkspace,
  rows: number,
  headDim: number,
  out: Float32Array,
  outOffsets: Int32Array,
  lse: Float32Array,
  lseOffsets: Int32Array,
): void {
  for (let r = 0; r < rows; r++) {
    const oo = outOffsets[r]!;
    const lr = w.l[r]!;
    if (lr === 0) {
      out.fill(0, oo, oo + headDim);
      lse[lseOffsets[r]!] = -Infinity;
      continue;
    }
    const inv = 1 / lr;
    const ao = r * headDim;
    for (let i = 0; i < headDim; i++) out[oo + i] = w.acc[ao + i]! * inv;
    lse[lseOffsets[r]!] = w.m[r]! + Math.log(lr);
  }
}
