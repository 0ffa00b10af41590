// Copyright 2026 the longctx authors. MIT license.
// @ts-nocheck: AssemblyScript source (v128, f32, usize, load/store builtins), not TypeScript.
// It is compiled by `deno run -A _tools/build_wasm.ts` into ./attention_wasm.ts; Deno only
// formats it.
// deno-lint-ignore-file

/**
 * The WASM SIMD twin of `foldRun` in ../_online_softmax.ts: a blocked online
 * (flash-style) softmax of groups of four query rows over the key/value rows [0, count).
 *
 * Memory is imported (a shared `WebAssembly.Memory` owned by `WasmHeap`); every pointer
 * is a byte address in it. Layouts, all f32 unless noted ("pitch" = headDim rounded up
 * to a multiple of 4, "chunk" = 4 floats, G = number of groups):
 *
 *   q      [G, pitch/4, 4, 4]  query rows of each group, interleaved by chunk: element i
 *                              of lane r at (i >> 2)·16 + r·4 + (i & 3) floats (caller)
 *   acc    [G·4, pitch]        running Σ exp(logit − m) · value, row-major  (reset here)
 *   m      [G·4]               running max logit                             (reset here)
 *   l      [G·4] f64           running Σ exp(logit − m)                      (reset here)
 *   vis    [G·4] i32           keys visible to each lane: a prefix [0, vis)  (caller)
 *   heads  [G·4] i32           KV head each lane reads                       (caller)
 *   s      [BLOCK, 4]          scratch: logits, then probabilities, of one group
 *
 * Lane r of a group reads key j of KV head h at `k + h·kHead + j·kTok` (bytes), value j
 * likewise. When the four lanes read one KV head (a GQA group, or four query tokens of
 * one head in prefill), every key and value load feeds four lanes. When they read
 * different heads (decode with fewer than four query heads per KV head: MHA, group 2),
 * each lane streams its own head. Either way the softmax step runs across the four lanes
 * of one v128. Padding lanes (vis 0) cost compute but never contribute. headDim need not
 * be a multiple of 4: the last `headDim % 4` elements take a scalar tail.
 */

/** Keys per block: logits of a block are computed, then exponentiated together. */
const BLOCK: i32 = 64;

/** Keys per sub-block of the value accumulation (see `attend`). */
const SUB: i32 = 8;

const NEG_INF: f32 = -Infinity;

/**
 * a · b + c per lane: one fused multiply-add where the engine has relaxed SIMD (which may
 * or may not round the product), else a multiply and an add. `_tools/build_wasm.ts`
 * builds one module of each kind; the branch is resolved at compile time, and binaryen
 * inlines the call.
 */
function madd(a: v128, b: v128, c: v128): v128 {
  return ASC_FEATURE_RELAXED_SIMD ? f32x4.relaxed_madd(a, b, c) : f32x4.add(f32x4.mul(a, b), c);
}

/** 1.5 · 2^23: adding it to |x| < 2^22 rounds x to an integer kept in the low mantissa bits. */
const ROUND_MAGIC: f32 = 12582912.0;

/**
 * exp(x) per lane for x ≤ 0 (Cephes expf: x = n·ln 2 + r, |r| ≤ ln 2 / 2, degree-6
 * polynomial in r, ~1 ulp). n is rounded with the 1.5 · 2^23 trick, whose bits also give
 * 2^n. Lanes below −87 (where exp underflows) and NaN lanes give exactly 0, so masked
 * logits (−∞) give probability 0.
 */
function expNeg(x: v128): v128 {
  const lo = f32x4.splat(-87.0);
  const keep = f32x4.ge(x, lo);
  const xc = f32x4.pmax(lo, x); // lo < x ? x : lo; NaN → lo
  const kf = madd(xc, f32x4.splat(1.44269504088896341), f32x4.splat(ROUND_MAGIC));
  const n = f32x4.sub(kf, f32x4.splat(ROUND_MAGIC)); // round(x / ln 2), in [−126, 0]
  let r = f32x4.sub(xc, f32x4.mul(n, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let y = f32x4.splat(1.9875691500e-4);
  y = madd(y, r, f32x4.splat(1.3981999507e-3));
  y = madd(y, r, f32x4.splat(8.3334519073e-3));
  y = madd(y, r, f32x4.splat(4.1665795894e-2));
  y = madd(y, r, f32x4.splat(1.6666665459e-1));
  y = madd(y, r, f32x4.splat(5.0000001201e-1));
  y = f32x4.add(madd(y, f32x4.mul(r, r), r), f32x4.splat(1.0));
  // bits(kf) = bits(ROUND_MAGIC) + n; (that + 127) << 23 keeps only (n + 127) << 23 = 2^n.
  const pow2n = i32x4.shl(i32x4.add(kf, i32x4.splat(127)), 23);
  return v128.and(f32x4.mul(y, pow2n), keep);
}

/** cap · tanh(x / cap) per lane, via tanh|y| = (1 − e^{−2|y|}) / (1 + e^{−2|y|}). */
function softCapLanes(x: v128, cap: v128, invCap: v128): v128 {
  const y = f32x4.mul(x, invCap);
  const signMask = i32x4.splat(0x80000000);
  const a = v128.andnot(y, signMask); // |y|
  const t = expNeg(f32x4.mul(a, f32x4.splat(-2.0)));
  const th = f32x4.div(f32x4.sub(f32x4.splat(1.0), t), f32x4.add(f32x4.splat(1.0), t));
  return f32x4.mul(v128.or(th, v128.and(y, signMask)), cap);
}

/** [Σa, Σb, Σc, Σd]: horizontal sums of four vectors in one vector. */
function sum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(f32x4.shuffle(a, b, 0, 4, 2, 6), f32x4.shuffle(a, b, 1, 5, 3, 7));
  const cd = f32x4.add(f32x4.shuffle(c, d, 0, 4, 2, 6), f32x4.shuffle(c, d, 1, 5, 3, 7));
  return f32x4.add(f32x4.shuffle(ab, cd, 0, 1, 4, 5), f32x4.shuffle(ab, cd, 2, 3, 6, 7));
}

/**
 * Dot products of the `n = headDim % 4` tail elements, as [lane0, lane1, lane2, lane3]:
 * lane r multiplies the group's last (partial) query chunk `qc` by the key at `kr`.
 */
function tailDots(qc: usize, k0: usize, k1: usize, k2: usize, k3: usize, n: usize): v128 {
  let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
  for (let t: usize = 0; t < n; t++) {
    const tb = t << 2;
    const qt = qc + tb;
    t0 += load<f32>(qt) * load<f32>(k0 + tb);
    t1 += load<f32>(qt, 16) * load<f32>(k1 + tb);
    t2 += load<f32>(qt, 32) * load<f32>(k2 + tb);
    t3 += load<f32>(qt, 48) * load<f32>(k3 + tb);
  }
  let v = f32x4.splat(t0);
  v = f32x4.replace_lane(v, 1, t1);
  v = f32x4.replace_lane(v, 2, t2);
  return f32x4.replace_lane(v, 3, t3);
}

/**
 * Raw logits q_r · k_j of one group whose four lanes read the same KV head, for keys
 * `kp0 + j·kTok`, j in [0, jn), stored as s[j, 0..4). One pointer walks the interleaved
 * queries with immediate offsets; two keys at a time share each query load.
 */
function scoresShared(qg: usize, kp0: usize, kTok: usize, jn: i32, d: usize, s: usize): void {
  const qEnd = qg + ((d >> 2) << 6);
  const tail = d & 3;
  const tailB: usize = (d & ~3) << 2;
  let j: i32 = 0;
  for (; j + 2 <= jn; j += 2) {
    const ka = kp0 + <usize> j * kTok;
    const kb = ka + kTok;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
    let qp = qg, pa = ka, pb = kb;
    while (qp < qEnd) {
      const kva = v128.load(pa);
      const kvb = v128.load(pb);
      let q = v128.load(qp);
      a0 = madd(q, kva, a0);
      b0 = madd(q, kvb, b0);
      q = v128.load(qp, 16);
      a1 = madd(q, kva, a1);
      b1 = madd(q, kvb, b1);
      q = v128.load(qp, 32);
      a2 = madd(q, kva, a2);
      b2 = madd(q, kvb, b2);
      q = v128.load(qp, 48);
      a3 = madd(q, kva, a3);
      b3 = madd(q, kvb, b3);
      qp += 64;
      pa += 16;
      pb += 16;
    }
    let sa = sum4(a0, a1, a2, a3);
    let sb = sum4(b0, b1, b2, b3);
    if (tail) {
      const ta = ka + tailB, tb = kb + tailB;
      sa = f32x4.add(sa, tailDots(qEnd, ta, ta, ta, ta, tail));
      sb = f32x4.add(sb, tailDots(qEnd, tb, tb, tb, tb, tail));
    }
    v128.store(s + (<usize> j << 4), sa);
    v128.store(s + (<usize> (j + 1) << 4), sb);
  }
  if (j < jn) {
    const ka = kp0 + <usize> j * kTok;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let qp = qg, pa = ka;
    while (qp < qEnd) {
      const kva = v128.load(pa);
      a0 = madd(v128.load(qp), kva, a0);
      a1 = madd(v128.load(qp, 16), kva, a1);
      a2 = madd(v128.load(qp, 32), kva, a2);
      a3 = madd(v128.load(qp, 48), kva, a3);
      qp += 64;
      pa += 16;
    }
    let sa = sum4(a0, a1, a2, a3);
    if (tail) {
      const ta = ka + tailB;
      sa = f32x4.add(sa, tailDots(qEnd, ta, ta, ta, ta, tail));
    }
    v128.store(s + (<usize> j << 4), sa);
  }
}

/**
 * Raw logits of one group whose lane r reads its own KV head, keys at `kr + j·kTok`:
 * s[j, r] = q_r · k_{r, j}. Each key load feeds one lane; two keys at a time share each
 * query load.
 */
function scoresSplit(
  qg: usize,
  k0: usize,
  k1: usize,
  k2: usize,
  k3: usize,
  kTok: usize,
  jn: i32,
  d: usize,
  s: usize,
): void {
  const qEnd = qg + ((d >> 2) << 6);
  const tail = d & 3;
  const tailB: usize = (d & ~3) << 2;
  let off: usize = 0;
  let j: i32 = 0;
  for (; j + 2 <= jn; j += 2) {
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
    let qp = qg, p0 = k0 + off, p1 = k1 + off, p2 = k2 + off, p3 = k3 + off;
    while (qp < qEnd) {
      let q = v128.load(qp);
      a0 = madd(q, v128.load(p0), a0);
      b0 = madd(q, v128.load(p0 + kTok), b0);
      q = v128.load(qp, 16);
      a1 = madd(q, v128.load(p1), a1);
      b1 = madd(q, v128.load(p1 + kTok), b1);
      q = v128.load(qp, 32);
      a2 = madd(q, v128.load(p2), a2);
      b2 = madd(q, v128.load(p2 + kTok), b2);
      q = v128.load(qp, 48);
      a3 = madd(q, v128.load(p3), a3);
      b3 = madd(q, v128.load(p3 + kTok), b3);
      qp += 64;
      p0 += 16;
      p1 += 16;
      p2 += 16;
      p3 += 16;
    }
    let sa = sum4(a0, a1, a2, a3);
    let sb = sum4(b0, b1, b2, b3);
    if (tail) {
      const o = off + tailB, ob = o + kTok;
      sa = f32x4.add(sa, tailDots(qEnd, k0 + o, k1 + o, k2 + o, k3 + o, tail));
      sb = f32x4.add(sb, tailDots(qEnd, k0 + ob, k1 + ob, k2 + ob, k3 + ob, tail));
    }
    v128.store(s + (<usize> j << 4), sa);
    v128.store(s + (<usize> (j + 1) << 4), sb);
    off += kTok << 1;
  }
  if (j < jn) {
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let qp = qg, p0 = k0 + off, p1 = k1 + off, p2 = k2 + off, p3 = k3 + off;
    while (qp < qEnd) {
      a0 = madd(v128.load(qp), v128.load(p0), a0);
      a1 = madd(v128.load(qp, 16), v128.load(p1), a1);
      a2 = madd(v128.load(qp, 32), v128.load(p2), a2);
      a3 = madd(v128.load(qp, 48), v128.load(p3), a3);
      qp += 64;
      p0 += 16;
      p1 += 16;
      p2 += 16;
      p3 += 16;
    }
    let sa = sum4(a0, a1, a2, a3);
    if (tail) {
      const o = off + tailB;
      sa = f32x4.add(sa, tailDots(qEnd, k0 + o, k1 + o, k2 + o, k3 + o, tail));
    }
    v128.store(s + (<usize> j << 4), sa);
  }
}

/**
 * acc_r += Σ_j p[j, r] · v_j for a group whose lanes read the same KV head: the four
 * rows at `ag` (row-major, `pitchB` bytes apart), values at `vp0 + j·vTok`. Eight output
 * floats per row stay in registers while the block's values stream past; each
 * probability is splatted straight from s.
 */
function accumulateShared(
  ag: usize,
  pitchB: usize,
  vp0: usize,
  vTok: usize,
  jn: i32,
  d: usize,
  s: usize,
): void {
  const a1 = ag + pitchB, a2 = a1 + pitchB, a3 = a2 + pitchB;
  const sEnd = s + (<usize> jn << 4);
  const d4B: usize = (d & ~3) << 2;
  let i: usize = 0;
  for (; i + 32 <= d4B; i += 32) {
    let c00 = v128.load(ag + i), c01 = v128.load(ag + i, 16);
    let c10 = v128.load(a1 + i), c11 = v128.load(a1 + i, 16);
    let c20 = v128.load(a2 + i), c21 = v128.load(a2 + i, 16);
    let c30 = v128.load(a3 + i), c31 = v128.load(a3 + i, 16);
    let vp = vp0 + i;
    let sp = s;
    do {
      const v0 = v128.load(vp), v1 = v128.load(vp, 16);
      let p = v128.load32_splat(sp);
      c00 = madd(p, v0, c00);
      c01 = madd(p, v1, c01);
      p = v128.load32_splat(sp, 4);
      c10 = madd(p, v0, c10);
      c11 = madd(p, v1, c11);
      p = v128.load32_splat(sp, 8);
      c20 = madd(p, v0, c20);
      c21 = madd(p, v1, c21);
      p = v128.load32_splat(sp, 12);
      c30 = madd(p, v0, c30);
      c31 = madd(p, v1, c31);
      vp += vTok;
      sp += 16;
    } while (sp < sEnd);
    v128.store(ag + i, c00);
    v128.store(ag + i, c01, 16);
    v128.store(a1 + i, c10);
    v128.store(a1 + i, c11, 16);
    v128.store(a2 + i, c20);
    v128.store(a2 + i, c21, 16);
    v128.store(a3 + i, c30);
    v128.store(a3 + i, c31, 16);
  }
  if (i < d4B) {
    let c0 = v128.load(ag + i), c1 = v128.load(a1 + i);
    let c2 = v128.load(a2 + i), c3 = v128.load(a3 + i);
    let vp = vp0 + i;
    let sp = s;
    do {
      const v0 = v128.load(vp);
      c0 = madd(v128.load32_splat(sp), v0, c0);
      c1 = madd(v128.load32_splat(sp, 4), v0, c1);
      c2 = madd(v128.load32_splat(sp, 8), v0, c2);
      c3 = madd(v128.load32_splat(sp, 12), v0, c3);
      vp += vTok;
      sp += 16;
    } while (sp < sEnd);
    v128.store(ag + i, c0);
    v128.store(a1 + i, c1);
    v128.store(a2 + i, c2);
    v128.store(a3 + i, c3);
  }
  accumulateTail(ag, pitchB, vp0, vp0, vp0, vp0, vTok, jn, d, s);
}

/**
 * acc_r += Σ_j p[j, r] · v_{r, j} for a group whose lane r reads its own KV head, values
 * at `vr + j·vTok`. Eight output floats per row stay in registers.
 */
function accumulateSplit(
  ag: usize,
  pitchB: usize,
  v0: usize,
  v1: usize,
  v2: usize,
  v3: usize,
  vTok: usize,
  jn: i32,
  d: usize,
  s: usize,
): void {
  const a1 = ag + pitchB, a2 = a1 + pitchB, a3 = a2 + pitchB;
  const sEnd = s + (<usize> jn << 4);
  const d4B: usize = (d & ~3) << 2;
  let i: usize = 0;
  for (; i + 32 <= d4B; i += 32) {
    let c00 = v128.load(ag + i), c01 = v128.load(ag + i, 16);
    let c10 = v128.load(a1 + i), c11 = v128.load(a1 + i, 16);
    let c20 = v128.load(a2 + i), c21 = v128.load(a2 + i, 16);
    let c30 = v128.load(a3 + i), c31 = v128.load(a3 + i, 16);
    let p0 = v0 + i, p1 = v1 + i, p2 = v2 + i, p3 = v3 + i;
    let sp = s;
    do {
      let p = v128.load32_splat(sp);
      c00 = madd(p, v128.load(p0), c00);
      c01 = madd(p, v128.load(p0, 16), c01);
      p = v128.load32_splat(sp, 4);
      c10 = madd(p, v128.load(p1), c10);
      c11 = madd(p, v128.load(p1, 16), c11);
      p = v128.load32_splat(sp, 8);
      c20 = madd(p, v128.load(p2), c20);
      c21 = madd(p, v128.load(p2, 16), c21);
      p = v128.load32_splat(sp, 12);
      c30 = madd(p, v128.load(p3), c30);
      c31 = madd(p, v128.load(p3, 16), c31);
      p0 += vTok;
      p1 += vTok;
      p2 += vTok;
      p3 += vTok;
      sp += 16;
    } while (sp < sEnd);
    v128.store(ag + i, c00);
    v128.store(ag + i, c01, 16);
    v128.store(a1 + i, c10);
    v128.store(a1 + i, c11, 16);
    v128.store(a2 + i, c20);
    v128.store(a2 + i, c21, 16);
    v128.store(a3 + i, c30);
    v128.store(a3 + i, c31, 16);
  }
  if (i < d4B) {
    let c0 = v128.load(ag + i), c1 = v128.load(a1 + i);
    let c2 = v128.load(a2 + i), c3 = v128.load(a3 + i);
    let p0 = v0 + i, p1 = v1 + i, p2 = v2 + i, p3 = v3 + i;
    let sp = s;
    do {
      c0 = madd(v128.load32_splat(sp), v128.load(p0), c0);
      c1 = madd(v128.load32_splat(sp, 4), v128.load(p1), c1);
      c2 = madd(v128.load32_splat(sp, 8), v128.load(p2), c2);
      c3 = madd(v128.load32_splat(sp, 12), v128.load(p3), c3);
      p0 += vTok;
      p1 += vTok;
      p2 += vTok;
      p3 += vTok;
      sp += 16;
    } while (sp < sEnd);
    v128.store(ag + i, c0);
    v128.store(a1 + i, c1);
    v128.store(a2 + i, c2);
    v128.store(a3 + i, c3);
  }
  accumulateTail(ag, pitchB, v0, v1, v2, v3, vTok, jn, d, s);
}

/** The scalar `headDim % 4` tail of the accumulation, lane r reading values at `vr`. */
function accumulateTail(
  ag: usize,
  pitchB: usize,
  v0: usize,
  v1: usize,
  v2: usize,
  v3: usize,
  vTok: usize,
  jn: i32,
  d: usize,
  s: usize,
): void {
  const a1 = ag + pitchB, a2 = a1 + pitchB, a3 = a2 + pitchB;
  const sEnd = s + (<usize> jn << 4);
  for (let t: usize = d & ~3; t < d; t++) {
    const tb = t << 2;
    let c0 = load<f32>(ag + tb), c1 = load<f32>(a1 + tb);
    let c2 = load<f32>(a2 + tb), c3 = load<f32>(a3 + tb);
    let off: usize = tb;
    for (let sp = s; sp < sEnd; sp += 16) {
      c0 += load<f32>(sp) * load<f32>(v0 + off);
      c1 += load<f32>(sp, 4) * load<f32>(v1 + off);
      c2 += load<f32>(sp, 8) * load<f32>(v2 + off);
      c3 += load<f32>(sp, 12) * load<f32>(v3 + off);
      off += vTok;
    }
    store<f32>(ag + tb, c0);
    store<f32>(a1 + tb, c1);
    store<f32>(a2 + tb, c2);
    store<f32>(a3 + tb, c3);
  }
}

/**
 * Online softmax step of one group over a block of `jn` logits in s: scale (and
 * soft-cap), mask keys at or past each lane's `vis`, raise the running max, rescale the
 * running sums, and leave probabilities in s.
 */
function softmaxStep(
  s: usize,
  jn: i32,
  b0: i32,
  visv: v128,
  mg: usize,
  lg: usize,
  ag: usize,
  pitchB: usize,
  d: usize,
  scale: f32,
  softCap: f32,
): void {
  const ninf = f32x4.splat(NEG_INF);
  const sc = f32x4.splat(scale);
  const cap = f32x4.splat(softCap);
  const invCap = f32x4.splat(softCap > 0 ? <f32> 1.0 / softCap : <f32> 0.0);
  let bmax = ninf;
  for (let j: i32 = 0; j < jn; j++) {
    const sj = s + (<usize> j << 4);
    let x = f32x4.mul(v128.load(sj), sc);
    if (softCap > 0) x = softCapLanes(x, cap, invCap);
    x = v128.bitselect(x, ninf, i32x4.gt_s(visv, i32x4.splat(b0 + j)));
    v128.store(sj, x);
    bmax = f32x4.pmax(bmax, x);
  }
  const mOld = v128.load(mg);
  const mNew = f32x4.pmax(mOld, bmax);
  // A lane that has seen nothing yet keeps m = −∞; exponentiate against 0 instead (−∞ → 0).
  const mSafe = v128.and(mNew, f32x4.ne(mNew, ninf));
  let sum = f32x4.splat(0);
  for (let j: i32 = 0; j < jn; j++) {
    const sj = s + (<usize> j << 4);
    const p = expNeg(f32x4.sub(v128.load(sj), mSafe));
    v128.store(sj, p);
    sum = f32x4.add(sum, p);
  }
  const alpha = expNeg(f32x4.sub(mOld, mSafe));
  const alphaHi = f32x4.shuffle(alpha, alpha, 2, 3, 0, 1);
  const sumHi = f32x4.shuffle(sum, sum, 2, 3, 0, 1);
  v128.store(
    lg,
    f64x2.add(
      f64x2.mul(v128.load(lg), f64x2.promote_low_f32x4(alpha)),
      f64x2.promote_low_f32x4(sum),
    ),
  );
  v128.store(
    lg + 16,
    f64x2.add(
      f64x2.mul(v128.load(lg + 16), f64x2.promote_low_f32x4(alphaHi)),
      f64x2.promote_low_f32x4(sumHi),
    ),
  );
  v128.store(mg, mNew);
  if (v128.any_true(f32x4.ne(mNew, mOld))) {
    const d4B: usize = (d & ~3) << 2;
    for (let r: usize = 0; r < 4; r++) {
      const ar = ag + r * pitchB;
      const al = r == 0
        ? f32x4.shuffle(alpha, alpha, 0, 0, 0, 0)
        : r == 1
        ? f32x4.shuffle(alpha, alpha, 1, 1, 1, 1)
        : r == 2
        ? f32x4.shuffle(alpha, alpha, 2, 2, 2, 2)
        : f32x4.shuffle(alpha, alpha, 3, 3, 3, 3);
      for (let i: usize = 0; i < d4B; i += 16) v128.store(ar + i, f32x4.mul(v128.load(ar + i), al));
      const a = f32x4.extract_lane(al, 0);
      for (let t: usize = d & ~3; t < d; t++) {
        store<f32>(ar + (t << 2), load<f32>(ar + (t << 2)) * a);
      }
    }
  }
}

/**
 * Attention of `groups` groups of four query lanes over keys/values [0, count) of the
 * KV head of each lane. Resets m, l, acc, then folds the keys block by block and, inside
 * a block, group by group (the caller orders groups by KV head, so a block of a
 * [tokens, kvHeads, headDim] cache is read in address order). The caller finishes each
 * lane: out = acc / l, lse = m + ln l (l = 0: the lane saw no key).
 */
export function attend(
  q: usize,
  acc: usize,
  m: usize,
  l: usize,
  vis: usize,
  heads: usize,
  s: usize,
  groups: i32,
  d: i32,
  k: usize,
  kTok: usize,
  kHead: usize,
  v: usize,
  vTok: usize,
  vHead: usize,
  count: i32,
  scale: f32,
  softCap: f32,
): void {
  const ud = <usize> d;
  const pitchB: usize = ((ud + 3) & ~3) << 2;
  const lanes = <usize> groups << 2;
  memory.fill(acc, 0, lanes * pitchB);
  for (let r: usize = 0; r < lanes; r++) {
    store<f32>(m + (r << 2), NEG_INF);
    store<f64>(l + (r << 3), 0);
  }
  for (let b0: i32 = 0; b0 < count; b0 += BLOCK) {
    const bn = min(BLOCK, count - b0);
    const kb = k + <usize> b0 * kTok;
    const vb = v + <usize> b0 * vTok;
    for (let g: i32 = 0; g < groups; g++) {
      const lane = <usize> g << 2;
      const visv = v128.load(vis + (lane << 2));
      const gmax = max(
        max(i32x4.extract_lane(visv, 0), i32x4.extract_lane(visv, 1)),
        max(i32x4.extract_lane(visv, 2), i32x4.extract_lane(visv, 3)),
      );
      const jn = min(bn, gmax - b0);
      if (jn <= 0) continue;
      const hv = v128.load(heads + (lane << 2));
      const h0 = <usize> i32x4.extract_lane(hv, 0);
      const shared = i32x4.all_true(i32x4.eq(hv, i32x4.splat(<i32> h0)));
      const qg = q + lane * pitchB;
      const ag = acc + lane * pitchB;
      if (shared) {
        scoresShared(qg, kb + h0 * kHead, kTok, jn, ud, s);
      } else {
        scoresSplit(
          qg,
          kb + <usize> i32x4.extract_lane(hv, 0) * kHead,
          kb + <usize> i32x4.extract_lane(hv, 1) * kHead,
          kb + <usize> i32x4.extract_lane(hv, 2) * kHead,
          kb + <usize> i32x4.extract_lane(hv, 3) * kHead,
          kTok,
          jn,
          ud,
          s,
        );
      }
      softmaxStep(
        s,
        jn,
        b0,
        visv,
        m + (lane << 2),
        l + (lane << 3),
        ag,
        pitchB,
        ud,
        scale,
        softCap,
      );
      // Values in sub-blocks of SUB keys: the output chunks held in registers are stored
      // back more often, but the rows one chunk pass touches stay in L1 (rows of a
      // [tokens, kvHeads, headDim] cache are kvHeads·headDim·4 bytes apart and map to
      // the same cache sets).
      for (let j0: i32 = 0; j0 < jn; j0 += SUB) {
        const jm = min(SUB, jn - j0);
        const sj = s + (<usize> j0 << 4);
        const vj = vb + <usize> j0 * vTok;
        if (shared) {
          accumulateShared(ag, pitchB, vj + h0 * vHead, vTok, jm, ud, sj);
        } else {
          accumulateSplit(
            ag,
            pitchB,
            vj + <usize> i32x4.extract_lane(hv, 0) * vHead,
            vj + <usize> i32x4.extract_lane(hv, 1) * vHead,
            vj + <usize> i32x4.extract_lane(hv, 2) * vHead,
            vj + <usize> i32x4.extract_lane(hv, 3) * vHead,
            vTok,
            jm,
            ud,
            sj,
          );
        }
      }
    }
  }
}

/** First byte after the module's static data: the heap may use memory from here on. */
export function heapBase(): usize {
  return __heap_base;
}

/** Keys per block (BLOCK): the caller sizes `s` as BLOCK · 16 bytes. */
export function blockKeys(): i32 {
  return BLOCK;
}
