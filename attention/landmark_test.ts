// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import {
  isLandmarkSelection,
  landmarkAttend,
  LandmarkAttention,
  landmarkFusedAttention,
  landmarkGroupedAttention,
  type LandmarkHeadSelection,
  LandmarkRetrieval,
} from "./landmark.ts";
import { isLandmarkIndex } from "./landmark_tokens.ts";
import { sparseAttend } from "./sparse_attend.ts";
import { mergeStates } from "./merge_states.ts";
import { AttentionPipeline } from "./pipeline.ts";
import { StreamingLlm } from "./streaming_llm.ts";
import type { HeadPlan, Router } from "./stages.ts";
import type { AttentionState } from "./types.ts";
import { headSelection } from "./selection.ts";
import { KvStore } from "../kv/kv_store.ts";
import { KeepAll } from "../kv/keep_all.ts";
import { Rope } from "../positional/rope.ts";
import {
  contiguous,
  copyInto,
  randn,
  Rng,
  sliceAxis,
  type Tensor,
  tensor,
  zeros,
} from "../tensor/mod.ts";
import { assertClose, naiveAttention } from "../tests/_util.ts";

type F32 = Tensor<"f32">;

function qkv(tq: number, tk: number, h: number, hkv: number, d: number, seed: number) {
  return {
    query: randn([tq, h, d], { seed, layout: "thd" }) as F32,
    key: randn([tk, hkv, d], { seed: seed + 1, layout: "thd" }) as F32,
    value: randn([tk, hkv, d], { seed: seed + 2, layout: "thd" }) as F32,
  };
}

/** Plain softmax over content tokens only (landmarks never read, nor the own landmark). */
function contentOnly(bs: number) {
  return (_t: number, _h: number, j: number): boolean => !isLandmarkIndex(j, bs);
}

// ---------------------------------------------------------------------------
// Grouped softmax: reference.

Deno.test("grouped softmax with no complete block is plain causal softmax (dense)", () => {
  for (const [T, bs] of [[1, 1], [3, 3], [19, 19], [50, 50]] as const) {
    const x = qkv(T, T, 4, 2, 8, T);
    const got = landmarkGroupedAttention(x, { blockSize: bs });
    const want = naiveAttention(x.query, x.key, x.value);
    assertClose(got.out.data, want.out, { label: `T=${T}` });
    assertClose(got.lse.data, want.lse, { label: `T=${T} lse` });
  }
});

Deno.test("grouped softmax by hand: blockSize 1, query after one block", () => {
  // Keys: c0, ℓ0, c1. The query (token 2) reads c0 only through ℓ0.
  const d = 2;
  const query = tensor(new Float32Array([1, 0]), [1, 1, d]);
  const key = tensor(new Float32Array([0.3, 9, 1.5, 0, -0.2, 4]), [3, 1, d]);
  const value = tensor(new Float32Array([1, 2, 100, 100, 3, -1]), [3, 1, d]);
  const s = 1 / Math.sqrt(d);
  const zl = 1.5 * s, z1 = -0.2 * s;
  const pl = Math.exp(zl) / (Math.exp(zl) + Math.exp(z1));
  const want = [pl * 1 + (1 - pl) * 3, pl * 2 + (1 - pl) * -1];
  const got = landmarkGroupedAttention({ query, key, value }, { blockSize: 1 });
  assertClose(got.out.data, want, { atol: 1e-6 });
  assertClose(got.lse.data, [Math.log(Math.exp(zl) + Math.exp(z1))], { atol: 1e-6 });
  // The landmark query (token 1) sees only c0: its own landmark is masked.
  const lq = landmarkGroupedAttention({
    query,
    key: sliceAxis(key, 0, 0, 2),
    value: sliceAxis(value, 0, 0, 2),
  }, {
    blockSize: 1,
  });
  assertClose(lq.out.data, [1, 2], { atol: 1e-6 });
});

/**
 * Sets each landmark key so that its logit for `query` (one token, MHA) equals its block's
 * log-sum-exp: ℓ_c = q · lse_c / (scale·|q|²).
 */
function landmarksAtBlockLse(
  query: F32,
  key: F32,
  isLm: (j: number) => boolean,
  last: number,
  scale: number,
): F32 {
  const [, H, d] = query.shape as [number, number, number];
  const out = zeros("f32", key.shape);
  copyInto(out, key);
  const qc = contiguous(query);
  for (let h = 0; h < H; h++) {
    const q = qc.data.subarray(h * d, (h + 1) * d);
    const qq = q.reduce((a, v) => a + v * v, 0);
    let logits: number[] = [];
    for (let j = 0; j <= last; j++) {
      if (!isLm(j)) {
        let s = 0;
        for (let i = 0; i < d; i++) s += q[i]! * out.data[(j * H + h) * d + i]!;
        logits.push(s * scale);
        continue;
      }
      const m = Math.max(...logits);
      const lse = logits.length === 0
        ? 0
        : m + Math.log(logits.reduce((a, z) => a + Math.exp(z - m), 0));
      for (let i = 0; i < d; i++) out.data[(j * H + h) * d + i] = q[i]! * lse / (scale * qq);
      logits = [];
    }
  }
  return out;
}

Deno.test("grouped softmax with every landmark logit set to its block's LSE is plain softmax over content tokens", () => {
  for (const [T, bs] of [[2, 1], [3, 1], [19, 2], [97, 4], [130, 7], [203, 50]] as const) {
    const H = 3, d = 8, scale = 1 / Math.sqrt(d);
    const x = qkv(T, T, H, H, d, 7 * T + bs);
    for (const t of [T - 1, Math.floor(T / 2), 0]) {
      const query = sliceAxis(x.query, 0, t, t + 1) as F32;
      const key = landmarksAtBlockLse(query, x.key, (j) => isLandmarkIndex(j, bs), t, scale);
      const got = landmarkGroupedAttention({ query, key, value: x.value }, {
        blockSize: bs,
        queryOffset: t,
      });
      const want = naiveAttention(query, key, x.value, {
        queryOffset: t,
        visible: contentOnly(bs),
      });
      assertClose(got.out.data, want.out, { atol: 2e-5, label: `T=${T} bs=${bs} t=${t}` });
      assertClose(got.lse.data, want.lse, { atol: 2e-5, label: `T=${T} bs=${bs} t=${t} lse` });
    }
  }
});

Deno.test("the LSE identity also holds for an irregular landmark mask", () => {
  const T = 40, H = 2, d = 8, scale = 1 / Math.sqrt(d);
  const lm = new Uint8Array(T);
  for (const j of [2, 3, 9, 10, 11, 20, 33]) lm[j] = 1; // includes empty blocks (adjacent landmarks)
  const x = qkv(1, T, H, H, d, 5);
  // Empty blocks keep their landmark's outer mass (authors' code): give them logit −∞ by a zero key
  // far below, i.e. exclude them from the identity by setting their key so exp underflows.
  const key = landmarksAtBlockLse(x.query, x.key, (j) => lm[j] === 1, T - 1, scale);
  for (const j of [3, 10, 11]) {
    for (let h = 0; h < H; h++) {
      const q = x.query.data.subarray(h * d, (h + 1) * d);
      const qq = q.reduce((a, v) => a + v * v, 0);
      for (let i = 0; i < d; i++) key.data[(j * H + h) * d + i] = -q[i]! * 1e4 / (scale * qq);
    }
  }
  const got = landmarkGroupedAttention({ query: x.query, key, value: x.value }, { landmarks: lm });
  const want = naiveAttention(x.query, key, x.value, { visible: (_t, _h, j) => lm[j] === 0 });
  assertClose(got.out.data, want.out, { atol: 2e-5 });
});

Deno.test("grouped softmax weights sum to one and landmark values are never mixed in", () => {
  const T = 77, bs = 6, H = 2, d = 4;
  const x = qkv(T, T, H, 1, d, 11);
  const value = zeros("f32", [T, 1, d]);
  for (let j = 0; j < T; j++) {
    for (let i = 0; i < d; i++) value.data[j * d + i] = isLandmarkIndex(j, bs) ? 1e6 : 1;
  }
  const got = landmarkGroupedAttention({ query: x.query, key: x.key, value }, { blockSize: bs });
  assertClose(got.out.data, new Float32Array(T * H * d).fill(1), { atol: 1e-5 });
});

// ---------------------------------------------------------------------------
// Grouped softmax: fused form.

Deno.test("fused grouped softmax equals the reference on awkward sizes, GQA, offsets and f16", () => {
  const cases: Array<[number, number, number, number, number, "f32" | "f16"]> = [
    // [tq, tk, heads, kvHeads, blockSize, dtype]
    [1, 1, 1, 1, 1, "f32"],
    [3, 3, 2, 1, 1, "f32"],
    [19, 19, 4, 2, 2, "f32"],
    [97, 97, 3, 3, 6, "f32"],
    [1, 130, 8, 2, 63, "f32"],
    [37, 203, 4, 1, 50, "f32"],
    [5, 99, 2, 2, 7, "f16"],
    [64, 129, 2, 1, 63, "f32"],
  ];
  for (const [tq, tk, H, KV, bs, dtype] of cases) {
    const d = 8;
    const query = randn([tq, H, d], { seed: tq, dtype });
    const key = randn([tk, KV, d], { seed: tk, dtype });
    const value = randn([tk, KV, d], { seed: tk + 1, dtype });
    const input = { query, key, value };
    const want = landmarkGroupedAttention(input, { blockSize: bs });
    const got = landmarkFusedAttention(input, { blockSize: bs });
    const label = `tq=${tq} tk=${tk} H=${H} KV=${KV} bs=${bs} ${dtype}`;
    assertClose(got.out.data, want.out.data, { atol: 3e-5, label });
    assertClose(got.lse.data, want.lse.data, { atol: 3e-5, label: `${label} lse` });
  }
  // A chunk whose queries start mid-block, not bottom-right aligned.
  const x = qkv(20, 100, 4, 2, 8, 3);
  const a = landmarkFusedAttention(x, { blockSize: 9, queryOffset: 33 });
  const b = landmarkGroupedAttention(x, { blockSize: 9, queryOffset: 33 });
  assertClose(a.out.data, b.out.data, { atol: 3e-5 });
});

Deno.test("grouped softmax validates its options", () => {
  const x = qkv(2, 5, 1, 1, 4, 1);
  assert.throws(
    () => landmarkGroupedAttention(x, { blockSize: 2, landmarks: [0, 0, 1, 0, 0] }),
    /either blockSize or landmarks/,
  );
  assert.throws(
    () => landmarkGroupedAttention(x, { landmarks: [0, 1] }),
    /landmarks must have one entry per key \(5\), got 2/,
  );
  assert.throws(
    () => landmarkFusedAttention(x, { blockSize: 2, queryOffset: 4 }),
    /queryOffset must keep every query's own key present \(0 <= queryOffset <= 3\), got 4/,
  );
  assert.throws(() => landmarkFusedAttention(x, { blockSize: 0 }), RangeError);
});

// ---------------------------------------------------------------------------
// Retrieval: k >= blocks is the grouped softmax over the whole context.

/** Reference output for the runner's raw inputs: rotate q and k at true positions, grouped softmax. */
function referenceFor(
  x: ReturnType<typeof qkv>,
  bs: number,
  rope: Rope | undefined,
): AttentionState {
  const q = rope ? rope.apply(x.query, 0) : x.query;
  const k = rope ? rope.apply(x.key, 0) : x.key;
  return landmarkFusedAttention({ query: q, key: k, value: x.value }, { blockSize: bs });
}

function runChunks(la: LandmarkAttention, x: ReturnType<typeof qkv>, chunk: number): F32 {
  const T = x.query.shape[0]!;
  const out = zeros("f32", x.query.shape);
  for (let t = 0; t < T; t += chunk) {
    const e = Math.min(T, t + chunk);
    const r = la.attend(
      0,
      sliceAxis(x.query, 0, t, e),
      sliceAxis(x.key, 0, t, e),
      sliceAxis(x.value, 0, t, e),
    );
    out.data.set(r.out.data, t * x.query.shape[1]! * x.query.shape[2]!);
  }
  return out;
}

Deno.test("retrieval with topK >= blocks equals grouped softmax over the whole context (any chunking, RoPE, key form, GQA)", () => {
  const configs = [
    { T: 97, bs: 4, H: 2, KV: 1, chunk: 1, rope: false, keyForm: "post-rope" as const },
    { T: 130, bs: 7, H: 4, KV: 2, chunk: 13, rope: true, keyForm: "post-rope" as const },
    { T: 150, bs: 9, H: 2, KV: 2, chunk: 150, rope: true, keyForm: "pre-rope" as const },
    { T: 211, bs: 20, H: 3, KV: 1, chunk: 37, rope: true, keyForm: "post-rope" as const },
  ];
  for (const c of configs) {
    const d = 16;
    const x = qkv(c.T, c.T, c.H, c.KV, d, c.T);
    const rope = c.rope ? new Rope({ headDim: d }) : undefined;
    const want = referenceFor(x, c.bs, rope);
    const blocks = Math.ceil(c.T / (c.bs + 1));
    for (const gqa of ["kv-head", "query-head"] as const) {
      for (
        const aggregate of ["per-token-and-head", "max-over-heads", "max-over-tokens"] as const
      ) {
        const la = new LandmarkAttention({
          layers: 1,
          heads: c.H,
          kvHeads: c.KV,
          headDim: d,
          blockSize: c.bs,
          topK: blocks,
          gqa,
          aggregate,
          keyForm: c.keyForm,
          pageSize: 7, // blocks straddle pages
          ...(rope ? { rope } : {}),
        });
        const got = runChunks(la, x, c.chunk);
        assertClose(got.data, want.out.data, {
          atol: 5e-5,
          rtol: 1e-4,
          label: `T=${c.T} bs=${c.bs} chunk=${c.chunk} ${gqa} ${aggregate} ${c.keyForm}`,
        });
      }
    }
  }
});

Deno.test("retrieval with k >= blocks sees every block at its true position (prefix = −Bℓ)", () => {
  const bs = 3, T = 23;
  const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 4 });
  store.append(0, randn([T, 1, 4], { seed: 1 }), randn([T, 1, 4], { seed: 2 }));
  const lr = new LandmarkRetrieval({ blockSize: bs, topK: 100 });
  const [sel] = lr.selectChunk({
    store,
    layer: 0,
    query: randn([1, 1, 4], { seed: 3 }),
    start: T - 1,
    queryPositions: [1000 + T - 1],
  });
  const s = sel![0] as LandmarkHeadSelection;
  // 5 complete blocks (0..19), own block 5 = tokens 20..22.
  assert.deepEqual([...s.gates], [3, 7, 11, 15, 19]);
  assert.deepEqual([...s.spans], [0, 3, 4, 7, 8, 11, 12, 15, 16, 19, 20, 23]);
  assert.deepEqual([...s.seenAt!], [0, 4, 8, 12, 16, 20].map((p) => 1000 + p));
  assert.deepEqual([...s.gateSeenAt!], [3, 7, 11, 15, 19].map((p) => 1000 + p));
  assert.equal(s.queryAt, 1000 + 22);
});

// ---------------------------------------------------------------------------
// Retrieval: selection rule.

Deno.test("retrieval slots: recent blocks keep true positions, older ones fill slots from 0, distances stay bounded", () => {
  const bs = 7, bl = 8, k = 3, T = 400, d = 8;
  const store = new KvStore({ layers: 1, kvHeads: 1, headDim: d, pageSize: 13 });
  store.append(0, randn([T, 1, d], { seed: 1 }), randn([T, 1, d], { seed: 2 }));
  const lr = new LandmarkRetrieval({ blockSize: bs, topK: k, gqa: "query-head" });
  const rope = new Rope({ headDim: d });
  const queries = randn([T, 4, d], { seed: 3 }) as F32;
  for (const t of [8 * k + 8, 100, 203, 399]) {
    const sels = lr.selectChunk({
      store,
      layer: 0,
      query: sliceAxis(queries, 0, t, t + 1),
      start: t,
      rope,
    });
    const nb = Math.floor(t / bl);
    const prefix = nb * bl - (k + 1) * bl;
    for (const hs of sels[0]!) {
      const s = hs as LandmarkHeadSelection;
      assert.ok(isLandmarkSelection(s));
      const retrieved = [...s.gates].slice(0, k).map((g) => (g - bs) / bl);
      assert.equal(retrieved.length, k);
      // The m far blocks take slots 0 … m−1, the recent ones slots m+1 … k (slot m stays empty).
      const m = retrieved.filter((c) => c < nb - k).length;
      retrieved.forEach((c, j) => {
        const slot = j < m ? j : j + 1;
        assert.equal(s.seenAt![j], prefix + slot * bl, `t=${t} block ${c}`);
        assert.equal(s.gateSeenAt![j], prefix + slot * bl + bs);
      });
      if (m === 0) {
        // Only recent blocks: all k of them, each at its true position.
        retrieved.forEach((c, j) => assert.equal(s.seenAt![j], c * bl));
      }
      // Every key is seen within (k + 1)·Bℓ + the current block of the query.
      for (let i = 0; i < s.seenAt!.length; i++) {
        assert.ok(s.queryAt! - s.seenAt![i]! < (k + 2) * bl, `t=${t} distance`);
        assert.ok(s.seenAt![i]! >= prefix);
      }
      // The current block is read up to the query at true positions; nothing else.
      const n = s.spans.length;
      assert.deepEqual([s.spans[n - 2], s.spans[n - 1]], [nb * bl, Math.min(t + 1, nb * bl + bs)]);
      assert.equal(s.seenAt![s.seenAt!.length - 1], nb * bl);
      assert.equal(s.queryAt, t);
    }
  }
});

/** Independent scorer: rope(q, qpos) · rope(ℓ, slot position) · scale, in f64. */
function oracleScores(
  q: Float32Array,
  landmarks: Float32Array[],
  qpos: number,
  k: number,
  bl: number,
  rope: Rope,
): number[] {
  const d = q.length, nb = landmarks.length, kEff = Math.min(k, nb);
  const prefix = nb * bl - (kEff + 1) * bl;
  const qr = new Float32Array(d);
  rope.rotateRow(q, 0, qr, 0, qpos);
  return landmarks.map((l, c) => {
    const pos = c >= nb - kEff ? c * bl + bl - 1 : prefix + bl - 1;
    const lr = new Float32Array(d);
    rope.rotateRow(l, 0, lr, 0, pos);
    let s = 0;
    for (let i = 0; i < d; i++) s += qr[i]! * lr[i]!;
    return s / Math.sqrt(d);
  });
}

function topKOf(v: number[], k: number): number[] {
  return v.map((x, i) => [x, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k)
    .map((p) => p[1]).sort((a, b) => a - b);
}

function softmax(v: number[]): number[] {
  const m = Math.max(...v);
  const e = v.map((x) => Math.exp(x - m));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

Deno.test("retrieval picks the top-k landmark logits at slot-0 / true scoring positions, per aggregation", () => {
  const bs = 5, bl = 6, k = 4, T = 300, H = 4, KV = 2, g = 2, d = 8, c = 3;
  const rope = new Rope({ headDim: d });
  const rawK = randn([T, KV, d], { seed: 1 }) as F32;
  const store = new KvStore({ layers: 1, kvHeads: KV, headDim: d, keyForm: "post-rope" });
  store.append(0, rope.apply(rawK, 0), randn([T, KV, d], { seed: 2 }));
  const start = T - c;
  const nb = Math.floor(start / bl);
  const q = randn([c, H, d], { seed: 3 }) as F32;
  const lms = (kh: number) =>
    Array.from(
      { length: nb },
      (_, b) => rawK.data.slice(((b * bl + bs) * KV + kh) * d, ((b * bl + bs) * KV + kh + 1) * d),
    );
  const scores = (t: number, h: number) =>
    oracleScores(
      q.data.slice((t * H + h) * d, (t * H + h + 1) * d),
      lms(Math.floor(h / g)),
      start + t,
      k,
      bl,
      rope,
    );
  const maxOf = (rows: number[][]) => rows[0]!.map((_, b) => Math.max(...rows.map((r) => r[b]!)));
  const blocksOf = (s: LandmarkHeadSelection) =>
    [...s.gates].filter((x) => x < nb * bl).map((x) => (x - bs) / bl);
  const run = (
    aggregate: "per-token-and-head" | "max-over-heads" | "max-over-tokens",
    gqa: "kv-head" | "query-head",
  ) =>
    new LandmarkRetrieval({ blockSize: bs, topK: k, aggregate, gqa }).selectChunk({
      store,
      layer: 0,
      query: q,
      start,
      rope,
    });

  let sel = run("per-token-and-head", "query-head");
  for (let t = 0; t < c; t++) {
    for (let h = 0; h < H; h++) {
      assert.deepEqual(
        blocksOf(sel[t]![h] as LandmarkHeadSelection),
        topKOf(scores(t, h), k),
        `t=${t} h=${h}`,
      );
    }
  }
  sel = run("per-token-and-head", "kv-head");
  for (let t = 0; t < c; t++) {
    for (let kh = 0; kh < KV; kh++) {
      const want = topKOf(maxOf([0, 1].map((i) => softmax(scores(t, kh * g + i)))), k);
      assert.equal(sel[t]![kh * g], sel[t]![kh * g + 1], "the group shares one selection");
      assert.deepEqual(blocksOf(sel[t]![kh * g] as LandmarkHeadSelection), want, `t=${t} kh=${kh}`);
    }
  }
  sel = run("max-over-heads", "query-head");
  for (let t = 0; t < c; t++) {
    const want = topKOf(maxOf([0, 1, 2, 3].map((h) => softmax(scores(t, h)))), k);
    for (let h = 0; h < H; h++) {
      assert.deepEqual(blocksOf(sel[t]![h] as LandmarkHeadSelection), want);
    }
  }
  sel = run("max-over-tokens", "query-head");
  for (let h = 0; h < H; h++) {
    const want = topKOf(maxOf([0, 1, 2].map((t) => softmax(scores(t, h)))), k);
    for (let t = 0; t < c; t++) {
      assert.deepEqual(blocksOf(sel[t]![h] as LandmarkHeadSelection), want);
    }
  }
});

// ---------------------------------------------------------------------------
// Composition: plain execution, merge-state execution, pipeline.

Deno.test("grouped attend = merge of per-block plain states with each LSE replaced by its gate logit", () => {
  const bs = 7, T = 203, H = 2, d = 8;
  const rope = new Rope({ headDim: d });
  const x = qkv(1, T, H, 1, d, 9);
  const store = new KvStore({
    layers: 1,
    kvHeads: 1,
    headDim: d,
    keyForm: "post-rope",
    pageSize: 10,
  });
  store.append(0, rope.apply(x.key, 0), x.value);
  const lr = new LandmarkRetrieval({ blockSize: bs, topK: 3 });
  const sels = lr.selectChunk({ store, layer: 0, query: x.query, start: T - 1, rope });
  const s = sels[0]![0] as LandmarkHeadSelection;
  const opts = { layer: 0, queryPositions: [T - 1], rope };
  const grouped = landmarkAttend(x.query, store, sels, opts);
  // One plain sparse attend per gated block and one for the rest; gate logits computed by hand.
  const parts: AttentionState[] = [];
  const qr = rope.apply(x.query, T - 1);
  for (let i = 0; i < s.gates.length; i++) {
    const blk = headSelection([[s.spans[2 * i]!, s.spans[2 * i + 1]!]], {
      seenAt: [s.seenAt![i]!],
      queryAt: T - 1,
    });
    const st = sparseAttend(x.query, store, [[blk, blk]], opts);
    const g = s.gates[i]!;
    const lk = new Float32Array(d);
    rope.rotateRow(x.key.data, g * d, lk, 0, s.gateSeenAt![i]!);
    for (let h = 0; h < H; h++) {
      let z = 0;
      for (let j = 0; j < d; j++) z += qr.data[h * d + j]! * lk[j]!;
      st.lse.data[h] = z / Math.sqrt(d);
    }
    parts.push(st);
  }
  const n = s.spans.length;
  const local = headSelection([[s.spans[n - 2]!, s.spans[n - 1]!]], {
    seenAt: [s.seenAt![n / 2 - 1]!],
    queryAt: T - 1,
  });
  parts.push(sparseAttend(x.query, store, [[local, local]], opts));
  const merged = mergeStates(parts);
  assertClose(grouped.out.data, merged.out.data, { atol: 2e-5 });
  assertClose(grouped.lse.data, merged.lse.data, { atol: 2e-5 });
});

Deno.test("plain execution of a landmark selection = grouped execution with gate logits at block LSE", () => {
  // One query token, MHA, no RoPE: landmark keys are built so their logit equals the block's LSE.
  const bs = 5, T = 160, H = 2, d = 8, scale = 1 / Math.sqrt(d);
  const x = qkv(1, T, H, H, d, 21);
  const key = landmarksAtBlockLse(x.query, x.key, (j) => isLandmarkIndex(j, bs), T - 1, scale);
  const store = new KvStore({ layers: 1, kvHeads: H, headDim: d, pageSize: 9 });
  store.append(0, key, x.value);
  const sels = new LandmarkRetrieval({ blockSize: bs, topK: 4 }).selectChunk({
    store,
    layer: 0,
    query: x.query,
    start: T - 1,
  });
  const opts = { layer: 0, queryPositions: [T - 1] };
  const grouped = landmarkAttend(x.query, store, sels, opts);
  const plain = sparseAttend(x.query, store, sels, opts);
  assertClose(grouped.out.data, plain.out.data, { atol: 2e-5 });
  assertClose(grouped.lse.data, plain.lse.data, { atol: 2e-5 });
  // And without that construction the two differ: the gate is what the grouped rule adds.
  store.clear();
  store.append(0, x.key, x.value);
  const g2 = landmarkAttend(x.query, store, sels, opts);
  const p2 = sparseAttend(x.query, store, sels, opts);
  assert.ok(Math.abs(g2.lse.data[0]! - p2.lse.data[0]!) > 1e-3);
});

Deno.test("LandmarkRetrieval in AttentionPipeline (plain attend) with k >= blocks = softmax over content tokens", () => {
  const bs = 6, T = 150, H = 4, KV = 2, d = 8;
  const rope = new Rope({ headDim: d });
  const x = qkv(T, T, H, KV, d, 31);
  const lr = new LandmarkRetrieval({ blockSize: bs, topK: 1000 });
  const pipe = new AttentionPipeline({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: d,
    rope,
    selector: lr,
    prefillBlock: 41,
  });
  const got = pipe.attend(0, x.query, x.key, x.value);
  const want = naiveAttention(rope.apply(x.query, 0), rope.apply(x.key, 0), x.value, {
    visible: contentOnly(bs),
  });
  // A landmark query's row excludes its own key, so masks agree (the naive mask drops landmarks too).
  assertClose(got.out.data, want.out, { atol: 3e-5 });
});

Deno.test("a router gives landmark retrieval to some KV heads and StreamingLLM to others (DuoAttention-style)", () => {
  const bs = 7, T = 120, H = 4, KV = 2, d = 8, g = 2;
  const rope = new Rope({ headDim: d });
  const x = qkv(T, T, H, KV, d, 41);
  const landmark = new LandmarkRetrieval({ blockSize: bs, topK: 1000 });
  const streaming = new StreamingLlm({ sinks: 4, window: 16, reindex: false });
  const router: Router = {
    name: "duo-like",
    route: (_l: number, kh: number): HeadPlan => ({
      selector: kh === 0 ? landmark : streaming,
      policy: new KeepAll(),
    }),
  };
  const pipe = new AttentionPipeline({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: d,
    rope,
    router,
  });
  const got = pipe.attend(0, x.query, x.key, x.value);
  const qr = rope.apply(x.query, 0), kr = rope.apply(x.key, 0);
  const lmHeads = naiveAttention(qr, kr, x.value, { visible: contentOnly(bs) });
  const stHeads = naiveAttention(qr, kr, x.value, {
    visible: (t, _h, j) => j < 4 || j > t - 16,
  });
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const want = h < g ? lmHeads.out : stHeads.out;
      const o = (t * H + h) * d;
      assertClose(got.out.data.subarray(o, o + d), want.subarray(o, o + d), {
        atol: 3e-5,
        label: `t=${t} h=${h}`,
      });
    }
  }
});

// ---------------------------------------------------------------------------
// Paper behaviour on synthetic landmark keys.

Deno.test("a needle block far in the past is retrieved through its landmark and dominates the output", () => {
  // Landmark keys carry their block's content (as training teaches): each landmark key is the mean
  // of its block's keys. The needle block's keys share the query's direction.
  const bs = 63, bl = 64, T = 64 * 128 + 10, H = 2, KV = 1, d = 32, k = 4;
  const rng = new Rng(5);
  const x = qkv(1, T, H, KV, d, 51);
  const dir = new Float32Array(d);
  rng.fillNormal(dir);
  const nrm = Math.hypot(...dir);
  for (let i = 0; i < d; i++) dir[i] = dir[i]! / nrm;
  const needle = 17;
  for (let j = needle * bl; j < needle * bl + bs; j++) {
    for (let i = 0; i < d; i++) x.key.data[j * d + i] = x.key.data[j * d + i]! * 0.2 + 4 * dir[i]!;
  }
  for (let c = 0; c < Math.floor(T / bl); c++) {
    for (let i = 0; i < d; i++) {
      let s = 0;
      for (let j = c * bl; j < c * bl + bs; j++) s += x.key.data[j * d + i]!;
      x.key.data[(c * bl + bs) * d + i] = s / bs;
    }
  }
  for (let h = 0; h < H; h++) for (let i = 0; i < d; i++) x.query.data[h * d + i] = 12 * dir[i]!;
  const la = new LandmarkAttention({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: d,
    blockSize: bs,
    topK: k,
  });
  const store = la.store; // filled directly: a cache built elsewhere
  store.append(0, x.key, x.value);
  const full = landmarkFusedAttention(x, { blockSize: bs });
  const sels = la.retrieval.selectChunk({ store, layer: 0, query: x.query, start: T - 1 });
  const s = sels[0]![0] as LandmarkHeadSelection;
  assert.ok([...s.gates].includes(needle * bl + bs), "the needle block is retrieved");
  const got = landmarkAttend(x.query, store, sels, { layer: 0, queryPositions: [T - 1] });
  let dot = 0, na = 0, nb2 = 0;
  for (let i = 0; i < got.out.data.length; i++) {
    dot += got.out.data[i]! * full.out.data[i]!;
    na += got.out.data[i]! ** 2;
    nb2 += full.out.data[i]! ** 2;
  }
  assert.ok(
    dot / Math.sqrt(na * nb2) > 0.99,
    `cosine to the full grouped softmax ${dot / Math.sqrt(na * nb2)}`,
  );
  // Read k blocks + the current partial block instead of every token.
  const r = la.residency();
  assert.ok(r.deviceBytes < r.totalBytes / 20);
  assert.equal(r.fetchBytesPerSet, k * bl * 2 * d * 4);
});

Deno.test("LandmarkAttention decode reads at most k blocks plus the current block, and reports bytes", () => {
  const bs = 15, bl = 16, k = 2, H = 4, KV = 2, d = 16;
  const rope = new Rope({ headDim: d });
  const x = qkv(400, 400, H, KV, d, 61);
  for (const gqa of ["kv-head", "query-head"] as const) {
    const la = new LandmarkAttention({
      layers: 2,
      heads: H,
      kvHeads: KV,
      headDim: d,
      rope,
      blockSize: bs,
      topK: k,
      gqa,
    });
    la.attend(
      1,
      sliceAxis(x.query, 0, 0, 300),
      sliceAxis(x.key, 0, 0, 300),
      sliceAxis(x.value, 0, 0, 300),
    );
    for (let t = 300; t < 400; t++) {
      la.attend(
        1,
        sliceAxis(x.query, 0, t, t + 1),
        sliceAxis(x.key, 0, t, t + 1),
        sliceAxis(x.value, 0, t, t + 1),
      );
      const local = (t % bl) + 1 - (t % bl === bs ? 1 : 0);
      for (let h = 0; h < H; h++) assert.equal(la.lastStats.tokensPerHead[h], k * bs + local);
      const setsRead = gqa === "kv-head" ? KV : H;
      assert.equal(la.lastStats.bytesRead, setsRead * ((k * bs + local) * 2 * d * 4 + k * d * 4));
    }
    assert.equal(la.position(1), 400);
    assert.equal(la.residency(0).totalBytes, 0);
    assert.equal(la.residency(1).blocks, KV * Math.floor(400 / bl));
    la.reset();
    assert.equal(la.store.length(1, 0), 0);
  }
});

Deno.test("landmarkAttend rejects landmarks in the spans, gates without content, and missing gate positions", () => {
  const store = new KvStore({ layers: 1, kvHeads: 1, headDim: 4 });
  store.append(0, randn([12, 1, 4], { seed: 1 }), randn([12, 1, 4], { seed: 2 }));
  const q = randn([1, 1, 4], { seed: 3 });
  const opts = { layer: 0, queryPositions: [11] };
  const bad = (sel: LandmarkHeadSelection) => () => landmarkAttend(q, store, [[sel]], opts);
  assert.throws(
    bad({ spans: Int32Array.of(0, 4), gates: Int32Array.of(3), blockSize: 3 }),
    /landmark 3 is a gate and must not be in the spans/,
  );
  assert.throws(
    bad({ spans: Int32Array.of(8, 11), gates: Int32Array.of(3, 7), blockSize: 3 }),
    /gate 3 has no selected content in \[0, 3\)/,
  );
  assert.throws(
    bad({
      spans: Int32Array.of(0, 3),
      seenAt: Float64Array.of(0),
      gates: Int32Array.of(3),
      blockSize: 3,
    }),
    /gives no gateSeenAt for its 1 gates/,
  );
  assert.throws(
    bad({ spans: Int32Array.of(0, 3), gates: Int32Array.of(3, 3), blockSize: 3 }),
    /gates must be ascending cache indices below 12/,
  );
  assert.throws(() => new LandmarkRetrieval({ topK: 0 }), /topK must be a positive integer, got 0/);
  assert.throws(
    () => new LandmarkRetrieval({ aggregate: "mean" as "max-over-heads" }),
    /aggregate must be one of/,
  );
});
