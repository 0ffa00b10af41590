// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import {
  buildSqueezedIndex,
  calibrateSqueezed,
  centroidLookup,
  loadSqueezedIndex,
  saveSqueezedIndex,
  SqueezedAttention,
  squeezedAttention,
  type SqueezedIndex,
} from "./squeezed.ts";
import { AttentionPipeline } from "./pipeline.ts";
import type { SelectContext } from "./stages.ts";
import { StreamingLlm } from "./streaming_llm.ts";
import { UnionSelector } from "./union.ts";
import { mergeStates } from "./merge_states.ts";
import { sparseAttend } from "./sparse_attend.ts";
import {
  type HeadSelection,
  headSelection,
  intersectSelections,
  selectAll,
  unionSelections,
} from "./selection.ts";
import { KvStore } from "../kv/kv_store.ts";
import { Rope } from "../positional/rope.ts";
import { randn, Rng, selectAxis, sliceAxis, type Tensor, tensor } from "../tensor/mod.ts";
import { assertClose, naiveAttention } from "../tests/_util.ts";

// ---------------------------------------------------------------------------
// Helpers.

function concat0(a: Tensor, b: Tensor): Tensor<"f32"> {
  const [ta, h, d] = a.shape as [number, number, number];
  const tb = b.shape[0]!;
  const out = new Float32Array((ta + tb) * h * d);
  out.set(a.data as Float32Array, 0);
  out.set(b.data as Float32Array, ta * h * d);
  return tensor(out, [ta + tb, h, d], { layout: "thd" });
}

/**
 * A fixed context whose keys come in topic segments: each KV head has
 * `topics` random centres (entries N(0, 1)); a segment of ~`segment` tokens
 * (geometric length) draws one topic, and each key is its centre + N(0, σ²)
 * noise. Queries point at the topics of two random context tokens of their KV
 * head with strength `a`.
 * No RoPE: these are the keys as attention sees them.
 */
function topicContext(
  n: number,
  kvHeads: number,
  heads: number,
  d: number,
  options: { topics?: number; segment?: number; noise?: number; a?: number; seed: number },
): { key: Tensor<"f32">; value: Tensor<"f32">; queries: (count: number) => Tensor<"f32"> } {
  const topics = options.topics ?? 64, segment = options.segment ?? 16;
  const noise = options.noise ?? 0.5, a = options.a ?? 1.25;
  const rng = new Rng(options.seed);
  const centre = rng.fillNormal(new Float32Array(kvHeads * topics * d));
  const topic = new Int32Array(n);
  for (let t = 0; t < n;) {
    const len = 1 + Math.floor(-Math.log(1 - rng.uniform()) * segment);
    const tp = rng.int(topics);
    for (let i = 0; i < len && t < n; i++) topic[t++] = tp;
  }
  const k = new Float32Array(n * kvHeads * d);
  for (let t = 0; t < n; t++) {
    for (let h = 0; h < kvHeads; h++) {
      for (let e = 0; e < d; e++) {
        k[(t * kvHeads + h) * d + e] = centre[(h * topics + topic[t]!) * d + e]! +
          noise * rng.normal();
      }
    }
  }
  const v = rng.fillNormal(new Float32Array(n * kvHeads * d));
  const g = heads / kvHeads;
  return {
    key: tensor(k, [n, kvHeads, d], { layout: "thd" }),
    value: tensor(v, [n, kvHeads, d], { layout: "thd" }),
    queries: (count) => {
      const q = new Float32Array(count * heads * d);
      for (let i = 0; i < count; i++) {
        for (let h = 0; h < heads; h++) {
          const kh = Math.floor(h / g);
          const t1 = topic[rng.int(n)]!, t2 = topic[rng.int(n)]!;
          for (let e = 0; e < d; e++) {
            q[(i * heads + h) * d + e] = a *
                (centre[(kh * topics + t1) * d + e]! + 0.6 * centre[(kh * topics + t2) * d + e]!) +
              rng.normal();
          }
        }
      }
      return tensor(q, [count, heads, d], { layout: "thd" });
    },
  };
}

/** Log-sum-exp of the logits of query (t, h) over keys [0, n) (f64). */
function lseOver(query: Tensor, key: Tensor, t: number, h: number, n: number): number {
  const [, heads, d] = query.shape as [number, number, number];
  const kh = Math.floor(h / (heads / key.shape[1]!));
  let m = -Infinity;
  const s = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let x = 0;
    for (let e = 0; e < d; e++) {
      x += query.data[(t * heads + h) * d + e]! * key.data[(j * key.shape[1]! + kh) * d + e]!;
    }
    s[j] = x / Math.sqrt(d);
    if (s[j]! > m) m = s[j]!;
  }
  let z = 0;
  for (let j = 0; j < n; j++) z += Math.exp(s[j]! - m);
  return m + Math.log(z);
}

/** A decode-step selection context for one KV head (no RoPE unless given). */
function decodeContext(
  store: KvStore,
  query: Float32Array,
  o: { group: number; length: number; rope?: Rope },
): SelectContext {
  return {
    store,
    layer: 0,
    kvHead: 0,
    group: o.group,
    length: o.length,
    queryPosition: o.length - 1,
    query,
    rope: o.rope,
    callTokens: 1,
    callStart: o.length - 1,
  };
}

/** Is the selection sorted, merged and equal to its own normalisation? */
function assertNormalised(sel: HeadSelection): void {
  assert.deepEqual(headSelection(sel.spans).spans, sel.spans);
}

function pipelineWith(
  selector: SqueezedAttention | undefined,
  o: { heads: number; kvHeads: number; headDim: number; rope?: Rope },
): AttentionPipeline {
  return new AttentionPipeline({
    layers: 1,
    ...o,
    ...(selector !== undefined ? { selector } : {}),
  });
}

// ---------------------------------------------------------------------------
// Oracles.

Deno.test("squeezedAttention() keeping every key equals dense attention on awkward sizes", () => {
  for (
    const [N, tail, tq, H, KV, d, obs] of [
      [1, 1, 1, 1, 1, 4, 0],
      [3, 2, 2, 2, 1, 8, 1],
      [19, 5, 5, 4, 2, 8, 0],
      [99, 1, 1, 6, 3, 16, 10],
      [1177, 19, 7, 4, 1, 8, 100],
      [40, 3, 3, 2, 2, 4, 60], // observation window longer than the context: all dense
    ] as const
  ) {
    const T = N + tail;
    const query = randn([tq, H, d], { seed: N + 1, layout: "thd" });
    const key = randn([T, KV, d], { seed: N + 2, layout: "thd" });
    const value = randn([T, KV, d], { seed: N + 3, layout: "thd" });
    const index = buildSqueezedIndex([sliceAxis(key, 0, 0, N)], { observationWindow: obs });
    const want = naiveAttention(query, key, value, { queryOffset: T - tq });
    for (
      const sel of [
        { threshold: -Infinity },
        { budget: 1 },
        { threshold: -Infinity, gqa: "query-head" as const, share: "token" as const },
      ]
    ) {
      const got = squeezedAttention({ query, key, value }, { index, ...sel });
      const label = `N=${N} tail=${tail} ${JSON.stringify(sel)}`;
      assertClose(got.out.data, want.out, { atol: 2e-5, label });
      assertClose(got.lse.data, want.lse, { atol: 2e-5, label });
      assert.ok(got.fixedKeysRead.every((r) => r === N), label);
    }
  }
});

Deno.test("SqueezedAttention in a pipeline keeping every key equals dense (RoPE, GQA, chunked prefill, decode)", () => {
  const N = 301, H = 4, KV = 2, d = 16;
  const rope = new Rope({ headDim: d });
  const fixedK = randn([N, KV, d], { seed: 1 }), fixedV = randn([N, KV, d], { seed: 2 });
  const user = { q: randn([23, H, d], { seed: 3 }), k: randn([23, KV, d], { seed: 4 }) };
  const userV = randn([23, KV, d], { seed: 5 });
  for (const sel of [{ threshold: -Infinity }, { budget: 1 }]) {
    const sq = new SqueezedAttention(sel);
    const pipe = pipelineWith(sq, { heads: H, kvHeads: KV, headDim: d, rope });
    const dense = pipelineWith(undefined, { heads: H, kvHeads: KV, headDim: d, rope });
    pipe.append(0, fixedK, fixedV);
    dense.append(0, fixedK, fixedV);
    sq.useIndex(buildSqueezedIndex(pipe.store, { observationWindow: 20, levels: 2 }));
    for (const [a, b] of [[0, 13], [13, 20], [20, 21], [21, 22], [22, 23]]) {
      const args = [
        sliceAxis(user.q, 0, a!, b!),
        sliceAxis(user.k, 0, a!, b!),
        sliceAxis(userV, 0, a!, b!),
      ] as const;
      const got = pipe.attend(0, ...args), want = dense.attend(0, ...args);
      assertClose(got.out.data, want.out.data, {
        atol: 1e-5,
        label: `${JSON.stringify(sel)} ${a}`,
      });
      assertClose(got.lse.data, want.lse.data, { atol: 1e-5 });
    }
    assert.ok(sq.stats.lookups > 0, "the index was used");
  }
});

Deno.test("one exact softmax over the Squeezed union equals mergeStates of the fixed part and the dynamic part", () => {
  const N = 1000, H = 4, KV = 2, d = 16;
  const rope = new Rope({ headDim: d });
  const ctx = topicContext(N, KV, H, d, { seed: 3 });
  const sq = new SqueezedAttention({ budget: 0.1 });
  const pipe = pipelineWith(sq, { heads: H, kvHeads: KV, headDim: d, rope });
  pipe.append(0, ctx.key, ctx.value);
  const index = buildSqueezedIndex(pipe.store, { observationWindow: 30 });
  sq.useIndex(index);
  const uq = ctx.queries(9),
    uk = randn([9, KV, d], { seed: 7 }),
    uv = randn([9, KV, d], {
      seed: 8,
    });
  pipe.attend(0, sliceAxis(uq, 0, 0, 8), sliceAxis(uk, 0, 0, 8), sliceAxis(uv, 0, 0, 8));
  const q = sliceAxis(uq, 0, 8, 9);
  const got = pipe.attend(0, q, sliceAxis(uk, 0, 8, 9), sliceAxis(uv, 0, 8, 9));
  const length = N + 9;
  const sel = pipe.lastSelection!;
  const fixedPart = sel.map((s) => intersectSelections(s, selectAll(N)));
  const dynamicPart = sel.map((s) => intersectSelections(s, headSelection([[N, length]])));
  sel.forEach((s, h) => {
    assertNormalised(s);
    assert.deepEqual(unionSelections(fixedPart[h]!, dynamicPart[h]!).spans, s.spans);
    assert.deepEqual([...dynamicPart[h]!.spans], [N, length], "every dynamic token is read");
  });
  // GQA kv-head mode: one shared selection per KV head.
  assert.equal(sel[0], sel[1]);
  assert.notEqual(sel[1], sel[2]);
  const opts = { layer: 0, queryPositions: [length - 1], rope };
  const fixed = sparseAttend(q, pipe.store, [fixedPart], opts);
  const dynamic = sparseAttend(q, pipe.store, [dynamicPart], opts);
  const merged = mergeStates([fixed, dynamic]);
  assertClose(merged.out.data, got.out.data, { atol: 1e-5, label: "out" });
  assertClose(merged.lse.data, got.lse.data, { atol: 1e-5, label: "lse" });
  // Sparse: about 10% of the clustered keys + the observation window.
  const readFixed = fixedPart.map((s) => s.spans.reduce((a, x, i) => a + (i % 2 ? x : -x), 0));
  for (const r of readFixed) assert.ok(r >= 97 + 30 && r < 250, `read ${r} fixed keys`);

  // The standalone function computes the same thing from rotated tensors.
  const keyAll = rope.apply(concat0(ctx.key, uk), 0);
  const valueAll = concat0(ctx.value, uv);
  const fn = squeezedAttention(
    { query: rope.apply(q, length - 1), key: keyAll, value: valueAll },
    { index, budget: 0.1, share: "token" },
  );
  assertClose(fn.out.data, got.out.data, { atol: 1e-5, label: "function vs pipeline" });
  for (let h = 0; h < H; h++) assert.equal(fn.fixedKeysRead[h], readFixed[h]);
  const remerged = mergeStates([fn.fixedState, fn.dynamicState]);
  assertClose(remerged.out.data, fn.out.data, { atol: 1e-6 });
});

Deno.test("with one cluster per key the lookup is the exact softmax and thresholding is exact", () => {
  const N = 97, H = 2, KV = 1, d = 8, obs = 7;
  const key = randn([N, KV, d], { seed: 11 }), query = randn([1, H, d], { seed: 12 });
  const value = randn([N + 1, KV, d], { seed: 13 });
  const index = buildSqueezedIndex([key], { observationWindow: obs, clusters: N - obs });
  const fine = index.heads[0]!.fine;
  assert.ok(fine.sizes.every((s) => s === 1));
  for (let h = 0; h < H; h++) {
    const p = centroidLookup(fine, selectAxis(query, 1, h));
    const lse = lseOver(query, key, 0, h, N - obs);
    for (let j = 0; j < N - obs; j++) {
      const c = fine.assignments[j]!;
      let dot = 0;
      for (let e = 0; e < d; e++) dot += query.data[h * d + e]! * key.data[j * d + e]!;
      const exact = Math.exp(dot / Math.sqrt(d) - lse);
      assert.ok(Math.abs(p[c]! - exact) < 1e-6 * Math.max(1, exact * 1e3), `key ${j}`);
    }
  }
  // Thresholding p̂ now keeps exactly the keys whose true probability exceeds it (one head).
  const q1 = sliceAxis(query, 1, 0, 1);
  const p = centroidLookup(fine, selectAxis(q1, 1, 0));
  const tau = [...p].sort((a, b) => b - a)[12]!; // keeps the 12 largest
  const r = squeezedAttention(
    { query: q1, key: concat0(key, randn([1, KV, d], { seed: 14 })), value },
    { index, threshold: tau },
  );
  assert.equal(r.fixedKeysRead[0], 12 + obs);
});

Deno.test("budget mode keeps the best clusters in order until the budget is met", () => {
  const N = 700, d = 8, obs = 13;
  const key = randn([N, 1, d], { seed: 61 });
  const index = buildSqueezedIndex([key], { observationWindow: obs, clusters: 45 });
  const fine = index.heads[0]!.fine;
  const store = new KvStore({ layers: 1, kvHeads: 1, headDim: d, keyForm: "post-rope" });
  store.append(0, key, randn([N, 1, d], { seed: 62 }));
  store.append(0, randn([1, 1, d], { seed: 63 }), randn([1, 1, d], { seed: 64 }));
  for (const [seed, budget] of [[1, 0.01], [2, 0.1], [3, 0.37], [4, 1]] as const) {
    const q = randn([1, 1, d], { seed });
    const p = centroidLookup(fine, selectAxis(q, 1, 0));
    const order = [...p.keys()].sort((a, b) => p[b]! - p[a]! || a - b);
    const target = Math.ceil(budget * index.clustered);
    const kept = new Set<number>();
    let sum = 0;
    for (const c of order) {
      if (sum >= target) break;
      kept.add(c);
      sum += fine.sizes[c]!;
    }
    const members: number[] = [];
    for (let j = 0; j < index.clustered; j++) if (kept.has(fine.assignments[j]!)) members.push(j);
    const want = unionSelections(
      headSelection(members.map((j) => [j, j + 1] as [number, number])),
      headSelection([[index.clustered, N + 1]]),
    );
    const sq = new SqueezedAttention({ index, budget });
    const got = sq.select(
      decodeContext(store, Float32Array.from(q.data), { group: 1, length: N + 1 }),
    ) as HeadSelection;
    assert.deepEqual(got.spans, want.spans, `budget ${budget}`);
    assert.equal(sq.stats.keysKept, sum);
  }
});

Deno.test("two-level lookup with a keep-all first level equals the one-level lookup", () => {
  const N = 800, H = 2, KV = 1, d = 16;
  const ctx = topicContext(N, KV, H, d, { seed: 21 });
  const index = buildSqueezedIndex([ctx.key], { observationWindow: 0, levels: 2 });
  assert.ok(index.heads[0]!.coarse !== undefined);
  const key = concat0(ctx.key, randn([1, KV, d], { seed: 2 }));
  const value = concat0(ctx.value, randn([1, KV, d], { seed: 3 }));
  const query = ctx.queries(1);
  const run = (o: Record<string, unknown>) =>
    squeezedAttention({ query, key, value }, { index, ...o } as never);
  const cal = calibrateSqueezed(index, [ctx.queries(20)], { sparsity: 0.8 });
  const pairs = [
    [{ threshold: cal.threshold, coarseThreshold: -Infinity }, {
      threshold: cal.threshold,
      hierarchical: false,
    }],
    [{ budget: 0.1, coarseBudget: 1 }, { budget: 0.1, hierarchical: false }],
  ];
  for (const [two, one] of pairs) {
    const a = run(two!), b = run(one!);
    assert.deepEqual(a.fixedKeysRead, b.fixedKeysRead, JSON.stringify(two));
    assertClose(a.out.data, b.out.data, { atol: 1e-6 });
  }
  // A restrictive first level reads fewer fine centroids and only keys under surviving coarse clusters.
  const sq = new SqueezedAttention({ index, budget: 0.1, coarseBudget: 0.2 });
  const flat = new SqueezedAttention({ index, budget: 0.1, hierarchical: false });
  const store = new KvStore({ layers: 1, kvHeads: KV, headDim: d, keyForm: "post-rope" });
  store.append(0, key, value);
  const ctxFor = decodeContext(store, Float32Array.from(query.data), { group: H, length: N + 1 });
  const sel = sq.select(ctxFor) as HeadSelection;
  flat.select(ctxFor);
  assert.ok(sq.stats.centroidsScored < flat.stats.centroidsScored);
  const coarse = index.heads[0]!.coarse!;
  const kept = new Set<number>();
  for (let i = 0; i < sel.spans.length; i += 2) {
    for (let j = sel.spans[i]!; j < Math.min(N, sel.spans[i + 1]!); j++) {
      kept.add(coarse.assignments[j]!);
    }
  }
  let coarseKeys = 0;
  for (const c of kept) coarseKeys += coarse.sizes[c]!;
  assert.ok(coarseKeys <= Math.ceil(0.2 * N) + Math.max(...coarse.sizes));
});

Deno.test("SqueezedAttention composes with attention sinks in a UnionSelector (one softmax)", () => {
  const N = 600, H = 4, KV = 2, d = 16;
  const rope = new Rope({ headDim: d });
  const ctx = topicContext(N, KV, H, d, { seed: 51 });
  const sq = new SqueezedAttention({ budget: 0.05 });
  const sinks = new StreamingLlm({ sinks: 4, window: 8, reindex: false });
  const pipe = new AttentionPipeline({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: d,
    rope,
    selector: new UnionSelector([sinks, sq]),
  });
  pipe.append(0, ctx.key, ctx.value);
  sq.useIndex(buildSqueezedIndex(pipe.store, { observationWindow: 0 }));
  const q = ctx.queries(1), k = randn([1, KV, d], { seed: 1 }), v = randn([1, KV, d], { seed: 2 });
  pipe.attend(0, q, k, v);
  const sel = pipe.lastSelection![0]!;
  assertNormalised(sel);
  // The union is Squeezed's own selection ∪ sinks ∪ window, read in one softmax.
  const g = H / KV;
  const own = sq.select(
    decodeContext(pipe.store, Float32Array.from(q.data.subarray(0, g * d)), {
      group: g,
      length: N + 1,
      rope,
    }),
  ) as HeadSelection;
  const expected = unionSelections(own, headSelection([[0, 4], [N + 1 - 8, N + 1]]));
  assert.deepEqual(sel.spans, expected.spans);
  assert.deepEqual([...intersectSelections(sel, headSelection([[0, 4]])).spans], [0, 4]);
});

// ---------------------------------------------------------------------------
// Behaviour.

Deno.test("Squeezed keeps ≥ 90% of the attention mass at a 10% budget on clustered keys", () => {
  const N = 3000, H = 4, KV = 2, d = 64, queries = 12;
  const ctx = topicContext(N, KV, H, d, { seed: 5 });
  const one = buildSqueezedIndex([ctx.key], { observationWindow: 0, levels: 2 });
  const key = concat0(ctx.key, randn([1, KV, d], { seed: 1 }));
  const value = concat0(ctx.value, randn([1, KV, d], { seed: 2 }));
  const rows: string[] = [];
  for (const hierarchical of [false, true]) {
    let recall = 0, oracle = 0, read = 0;
    for (let i = 0; i < queries; i++) {
      const query = ctx.queries(1);
      const r = squeezedAttention({ query, key, value }, {
        index: one,
        budget: 0.1,
        hierarchical,
      });
      for (let h = 0; h < H; h++) {
        // Mass recall = Σ_selected p / Σ_fixed p = exp(lse_selected − lse_fixed).
        const all = lseOver(query, ctx.key, 0, h, N);
        recall += Math.exp(r.fixedState.lse.data[h]! - all);
        read += r.fixedKeysRead[h]!;
        // The best any selection of as many keys could do.
        const kh = Math.floor(h / 2);
        const p: number[] = [];
        for (let j = 0; j < N; j++) {
          let x = 0;
          for (let e = 0; e < d; e++) {
            x += query.data[h * d + e]! * ctx.key.data[(j * KV + kh) * d + e]!;
          }
          p.push(Math.exp(x / Math.sqrt(d) - all));
        }
        p.sort((a, b) => b - a);
        oracle += p.slice(0, r.fixedKeysRead[h]).reduce((a, b) => a + b, 0);
      }
    }
    recall /= queries * H;
    oracle /= queries * H;
    rows.push(
      `${hierarchical ? 2 : 1}-level: recall ${recall.toFixed(3)}, top-k oracle ${
        oracle.toFixed(3)
      }, read ${(read / (queries * H * N) * 100).toFixed(1)}%`,
    );
    assert.ok(read / (queries * H * N) < 0.11, rows.at(-1));
    assert.ok(recall >= 0.9, rows.at(-1));
    assert.ok(oracle - recall < 0.05, rows.at(-1));
  }
});

Deno.test("calibrateSqueezed() thresholds prune the target fraction of keys on the calibration queries", () => {
  const N = 1500, H = 4, KV = 2, d = 16, obs = 40;
  const ctx = topicContext(N, KV, H, d, { seed: 9, a: 0.8 });
  const index = buildSqueezedIndex([ctx.key, ctx.key], { observationWindow: obs });
  const calQ = [ctx.queries(obs), ctx.queries(obs)];
  const cal = calibrateSqueezed(index, calQ, { sparsity: 0.9 });
  assert.deepEqual(cal.quantiles, [0.5, 0.7, 0.8, 0.9]);
  for (let i = 1; i < 4; i++) assert.ok(cal.thresholds[i]! >= cal.thresholds[i - 1]!);
  assert.equal(cal.threshold, cal.thresholds[3]);
  assert.equal(cal.coarseThreshold, undefined);
  const maxSize = Math.max(...index.heads.flatMap((h) => [...h.fine.sizes]));
  const M = 2 * KV * index.clustered;
  for (const [qi, q] of cal.quantiles.entries()) {
    // One key set per KV head from p̂ averaged over the same queries: the pooled rule exactly.
    let kept = 0;
    for (let l = 0; l < 2; l++) {
      const key = concat0(ctx.key, randn([obs, KV, d], { seed: 3 }));
      const value = concat0(ctx.value, randn([obs, KV, d], { seed: 4 }));
      const r = squeezedAttention({ query: calQ[l]!, key, value }, {
        index,
        layer: l,
        threshold: cal.thresholds[qi]!,
        share: "call",
      });
      for (let kh = 0; kh < KV; kh++) kept += r.fixedKeysRead[kh * (H / KV)]! - obs;
    }
    const frac = kept / M;
    assert.ok(
      frac <= 1 - q + 1 / M && frac >= 1 - q - (maxSize + 1) / M,
      `q=${q}: kept ${frac.toFixed(4)} of the keys`,
    );
  }
  // RoPE: raw queries + rope equal pre-rotated queries.
  const rope = new Rope({ headDim: d });
  const raw = calibrateSqueezed(index, calQ, { rope });
  const rotated = calibrateSqueezed(index, calQ.map((t) => rope.apply(t, N - obs)));
  assert.ok(Math.abs(raw.threshold - rotated.threshold) <= 1e-9 * Math.abs(raw.threshold));
  // Two levels report both.
  const two = buildSqueezedIndex([ctx.key], { observationWindow: obs, levels: 2 });
  const cal2 = calibrateSqueezed(two, [calQ[0]!]);
  assert.equal(cal2.coarseSparsity, 0.7);
  assert.ok(Number.isFinite(cal2.coarseThreshold) && cal2.coarseThresholds!.length === 4);
});

Deno.test("SqueezedAttention GQA modes: shared per KV head or per query head; equal under MHA", () => {
  const N = 400, d = 8;
  const make = (H: number, KV: number, gqa: "kv-head" | "query-head") => {
    const ctx = topicContext(N, KV, H, d, { seed: 31 });
    const store = new KvStore({ layers: 1, kvHeads: KV, headDim: d, keyForm: "post-rope" });
    store.append(0, ctx.key, ctx.value);
    store.append(0, randn([1, KV, d], { seed: 1 }), randn([1, KV, d], { seed: 2 }));
    const index = buildSqueezedIndex(store, { observationWindow: 10, fixedLength: N });
    const q = ctx.queries(1);
    const sq = new SqueezedAttention({ index, budget: 0.15, gqa });
    const g = H / KV;
    const query = Float32Array.from(q.data.subarray(0, g * d));
    return sq.select(decodeContext(store, query, { group: g, length: N + 1 }));
  };
  const shared = make(4, 1, "kv-head");
  assert.ok(!Array.isArray(shared));
  const per = make(4, 1, "query-head") as readonly HeadSelection[];
  assert.equal(per.length, 4);
  per.forEach(assertNormalised);
  assert.ok(per.some((s) => s.spans.join() !== per[0]!.spans.join()), "heads differ");
  const a = make(2, 2, "kv-head") as HeadSelection, b = make(2, 2, "query-head") as HeadSelection;
  assert.deepEqual(a.spans, b.spans);
});

Deno.test("SqueezedAttention reads everything before an index is set and inside the fixed context", () => {
  const H = 2, KV = 1, d = 8, N = 60;
  const rope = new Rope({ headDim: d });
  const sq = new SqueezedAttention({ budget: 0.1 });
  const pipe = pipelineWith(sq, { heads: H, kvHeads: KV, headDim: d, rope });
  const dense = pipelineWith(undefined, { heads: H, kvHeads: KV, headDim: d, rope });
  const q = randn([N, H, d], { seed: 1 }), k = randn([N, KV, d], { seed: 2 });
  const v = randn([N, KV, d], { seed: 3 });
  // No index yet: the fixed context's own prefill is dense (offline in the paper).
  assertClose(pipe.attend(0, q, k, v).out.data, dense.attend(0, q, k, v).out.data, {
    atol: 1e-6,
  });
  assert.equal(sq.stats.lookups, 0);
  const index = buildSqueezedIndex(pipe.store, { observationWindow: 0, clusters: 6 });
  sq.useIndex(index);
  assert.equal(sq.index, index);
  const ctx = decodeContext(pipe.store, new Float32Array(H * d), { group: H, length: N, rope });
  assert.deepEqual([...(sq.select(ctx) as HeadSelection).spans], [0, N]);
});

Deno.test("buildSqueezedIndex() from a pre-RoPE store rotates keys to their positions first", () => {
  const N = 300, KV = 2, d = 16;
  const rope = new Rope({ headDim: d });
  const k = randn([N, KV, d], { seed: 1 }), v = randn([N, KV, d], { seed: 2 });
  const pre = new KvStore({ layers: 1, kvHeads: KV, headDim: d, keyForm: "pre-rope" });
  pre.append(0, k, v);
  const post = new KvStore({ layers: 1, kvHeads: KV, headDim: d, keyForm: "post-rope" });
  post.append(0, rope.apply(k, 0), v);
  const a = buildSqueezedIndex(pre, { rope, observationWindow: 20 });
  const b = buildSqueezedIndex(post, { observationWindow: 20 });
  const c = buildSqueezedIndex([rope.apply(k, 0)], { observationWindow: 20 });
  for (let h = 0; h < KV; h++) {
    assert.deepEqual(a.heads[h]!.fine.assignments, b.heads[h]!.fine.assignments);
    assert.deepEqual(b.heads[h]!.fine.assignments, c.heads[h]!.fine.assignments);
    assertClose(a.heads[h]!.fine.centroids, b.heads[h]!.fine.centroids, { atol: 1e-6 });
  }
  // Without the rope, a pre-RoPE store clusters the raw keys: different clusters.
  const raw = buildSqueezedIndex(pre, { observationWindow: 20 });
  assert.notDeepEqual(raw.heads[0]!.fine.assignments, a.heads[0]!.fine.assignments);
});

Deno.test("saveSqueezedIndex()/loadSqueezedIndex() round-trip the index and its calibration", () => {
  const N = 500, H = 2, KV = 1, d = 8;
  const ctx = topicContext(N, KV, H, d, { seed: 41 });
  const index = buildSqueezedIndex([ctx.key], { observationWindow: 25, levels: 2 });
  const cal = calibrateSqueezed(index, [ctx.queries(25)], { sparsity: 0.9 });
  const bytes = saveSqueezedIndex(index, { calibration: cal });
  const back = loadSqueezedIndex(bytes);
  assert.deepEqual(back.calibration, cal);
  assert.equal(back.index.fixedLength, N);
  assert.equal(back.index.observationWindow, 25);
  const key = concat0(ctx.key, randn([2, KV, d], { seed: 5 }));
  const value = concat0(ctx.value, randn([2, KV, d], { seed: 6 }));
  const query = ctx.queries(2);
  const a = squeezedAttention({ query, key, value }, { index, calibration: cal });
  const b = squeezedAttention({ query, key, value }, {
    index: back.index,
    calibration: back.calibration!,
  });
  assert.deepEqual(a.out.data, b.out.data);
  assert.deepEqual(a.fixedKeysRead, b.fixedKeysRead);
  assert.equal(loadSqueezedIndex(saveSqueezedIndex(index)).calibration, undefined);
  // A context no longer than the observation window: no clusters, everything is read.
  const small = buildSqueezedIndex([sliceAxis(ctx.key, 0, 0, 20)], { observationWindow: 25 });
  assert.equal(small.clustered, 0);
  const smallBack = loadSqueezedIndex(saveSqueezedIndex(small)).index;
  assert.equal(smallBack.observationWindow, 20);
  assert.equal(smallBack.heads[0]!.fine.sizes.length, 0);
  const few = squeezedAttention(
    { query, key: sliceAxis(key, 0, 0, 22), value: sliceAxis(value, 0, 0, 22) },
    { index: smallBack, budget: 0.1 },
  );
  assert.ok(few.fixedKeysRead.every((r) => r === 20));
  // -Infinity thresholds survive JSON.
  const inf = { ...cal, coarseThreshold: -Infinity };
  assert.equal(
    loadSqueezedIndex(saveSqueezedIndex(index, { calibration: inf })).calibration!.coarseThreshold,
    -Infinity,
  );
});

// ---------------------------------------------------------------------------
// Bad input.

Deno.test("Squeezed rejects bad input with clear errors", () => {
  const key = randn([50, 2, 8], { seed: 1 });
  assert.throws(
    () => buildSqueezedIndex([key], { observationWindow: 10, clusters: 41 }),
    new RangeError(
      "Cannot build Squeezed index: clusters must be at most the number of clustered keys (40 = 50 fixed − 10 observation window), got 41",
    ),
  );
  assert.throws(
    () => buildSqueezedIndex([randn([0, 2, 8])]),
    new RangeError("Cannot build Squeezed index: the fixed context is empty (0 tokens)"),
  );
  assert.throws(() => buildSqueezedIndex([]), /one key tensor per layer, got 0/);
  const nan = randn([50, 2, 8], { seed: 2 });
  nan.data[(7 * 2 + 1) * 8 + 3] = NaN;
  assert.throws(
    () => buildSqueezedIndex([nan], { observationWindow: 0 }),
    /keys must be finite, got NaN at layer 0, kvHead 1, token 7, element 3/,
  );
  assert.throws(
    () => buildSqueezedIndex([key, randn([50, 2, 4])]),
    /keys\[1\] shape \[50, 2, 4\] must equal keys\[0\] shape \[50, 2, 8\]/,
  );
  assert.throws(() => buildSqueezedIndex([key], { clusterFraction: 0 }), /in \(0, 1\], got 0/);
  assert.throws(() => buildSqueezedIndex([key], { levels: 3 as 1 }), /levels must be 1 or 2/);
  assert.throws(
    () => buildSqueezedIndex([key], { observationWindow: 0, levels: 2, coarseClusters: 9 }),
    /coarseClusters must be at most clusters \(2\), got 9/,
  );
  assert.throws(() => buildSqueezedIndex("keys" as never), TypeError);

  const index = buildSqueezedIndex([key], { observationWindow: 5 });
  const value = randn([52, 2, 8], { seed: 3 });
  const key2 = concat0(key, randn([2, 2, 8], { seed: 4 }));
  const q = randn([1, 4, 8], { seed: 5 });
  assert.throws(() => new SqueezedAttention({}), /give threshold, calibration or budget/);
  assert.throws(
    () => new SqueezedAttention({ budget: 0.1, threshold: 0.01 }),
    /either a threshold .* or a budget, got both/,
  );
  assert.throws(() => new SqueezedAttention({ budget: 0 }), /budget must be in \(0, 1\]/);
  assert.throws(() => new SqueezedAttention({ budget: 1.5 }), RangeError);
  assert.throws(() => new SqueezedAttention({ threshold: NaN }), /threshold must be a number/);
  assert.throws(() => new SqueezedAttention({ budget: 0.1, gqa: "x" as "kv-head" }), TypeError);
  assert.throws(
    () => squeezedAttention({ query: randn([1, 4, 4]), key: key2, value }, { index, budget: 0.5 }),
    TypeError,
  );
  assert.throws(
    () =>
      squeezedAttention(
        { query: randn([1, 4, 16]), key: randn([52, 2, 16]), value: randn([52, 2, 16]) },
        { index, budget: 0.5 },
      ),
    /the index has kvHeads 2 and headDim 8, but the keys have kvHeads 2 and headDim 16/,
  );
  assert.throws(
    () =>
      squeezedAttention({ query: q, key: key2, value }, { index, budget: 0.5, queryOffset: 49 }),
    /queries must follow the fixed context \(queryOffset ≥ 50\), got 49/,
  );
  assert.throws(
    () => squeezedAttention({ query: q, key: key2, value }, { index, budget: 0.5, layer: 1 }),
    /layer must be in \[0, 1\), got 1/,
  );
  assert.throws(
    () => calibrateSqueezed(index, [randn([5, 4, 16])]),
    /queries\[0\] headDim \(16\) does not match index headDim \(8\)/,
  );
  assert.throws(() => calibrateSqueezed(index, [q], { sparsity: 1.2 }), /sparsity must be in/);
  assert.throws(() => calibrateSqueezed(index, [q, q]), /one tensor per layer \(1\), got 2/);

  // A store whose head dim differs from the index.
  const sq = new SqueezedAttention({ index, budget: 0.2 });
  const pipe = new AttentionPipeline({ layers: 1, heads: 4, kvHeads: 2, headDim: 4, selector: sq });
  pipe.append(0, randn([50, 2, 4], { seed: 1 }), randn([50, 2, 4], { seed: 2 }));
  assert.throws(
    () => pipe.attend(0, randn([1, 4, 4]), randn([1, 2, 4]), randn([1, 2, 4])),
    /the index has kvHeads 2 and headDim 8, but the store has kvHeads 2 and headDim 4/,
  );

  // Corrupted or foreign files.
  const bytes = saveSqueezedIndex(index);
  const flipped = Uint8Array.from(bytes);
  flipped[100]! ^= 0xff;
  assert.throws(() => loadSqueezedIndex(flipped), /checksum mismatch/);
  assert.throws(() => loadSqueezedIndex(bytes.subarray(0, 40)), TypeError);
  assert.throws(() => loadSqueezedIndex(new Uint8Array(64)), /magic "LCKM" missing/);

  // A hand-built index that breaks an invariant.
  const broken: SqueezedIndex = { ...index, clustered: 44 };
  assert.throws(() => new SqueezedAttention({ index: broken, budget: 0.1 }), /index\.clustered/);
});
