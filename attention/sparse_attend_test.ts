// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { createAttendStats, sparseAttend } from "./sparse_attend.ts";
import {
  type HeadSelection,
  headSelection,
  renumberContiguous,
  selectAll,
  type Selection,
} from "./selection.ts";
import { denseAttention } from "./dense.ts";
import { KvStore } from "../kv/kv_store.ts";
import { Rope } from "../positional/rope.ts";
import { randn, type Tensor, zeros } from "../tensor/mod.ts";
import { assertClose, naiveAttention } from "../tests/_util.ts";

/** Rotates a [t, h, d] tensor's token t to positions[t] (copy). */
function rotated(rope: Rope, x: Tensor, positions: ArrayLike<number>): Tensor<"f32"> {
  return rope.apply(x as Tensor<"f32">, positions);
}

function setup(T: number, KV: number, D: number, pageSize: number, seed: number) {
  const key = randn([T, KV, D], { seed, layout: "thd" });
  const value = randn([T, KV, D], { seed: seed + 1, layout: "thd" });
  return { key, value, pageSize };
}

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

Deno.test("sparseAttend() with everything at original positions equals dense attention", () => {
  const cases: Array<[number, number, number, number, number, number]> = [
    // [T, queryTokens, heads, kvHeads, headDim, pageSize]
    [1, 1, 1, 1, 2, 1],
    [3, 1, 2, 1, 4, 2],
    [19, 19, 4, 2, 8, 7],
    [97, 1, 8, 2, 16, 32],
    [97, 5, 3, 3, 6, 256],
    [1177, 1, 4, 1, 32, 100],
  ];
  let seed = 1;
  for (const [T, tq, H, KV, D, pageSize] of cases) {
    const { key, value } = setup(T, KV, D, pageSize, seed);
    const query = randn([tq, H, D], { seed: seed + 7, layout: "thd" });
    seed += 10;
    const rope = new Rope({ headDim: D });
    const qpos = range(tq, T - tq);
    // Oracle: rotate q and k at original positions, causal dense attention.
    const want = denseAttention({
      query: rotated(rope, query, qpos),
      key: rotated(rope, key, range(T)),
      value,
    });
    for (const keyForm of ["post-rope", "pre-rope"] as const) {
      const store = new KvStore({ layers: 2, kvHeads: KV, headDim: D, pageSize, keyForm });
      store.append(1, keyForm === "post-rope" ? rotated(rope, key, range(T)) : key, value);
      const sels: Selection[] = qpos.map((p) => Array(H).fill(selectAll(p + 1)));
      const stats = createAttendStats(H);
      const got = sparseAttend(query, store, sels, { layer: 1, queryPositions: qpos, rope, stats });
      const label = `T=${T} tq=${tq} H=${H} KV=${KV} D=${D} page=${pageSize} ${keyForm}`;
      assertClose(got.out.data, want.out.data, { atol: 2e-5, rtol: 1e-4, label });
      assertClose(got.lse.data, want.lse.data, { atol: 2e-5, rtol: 1e-5, label });
      const expectTokens = qpos.reduce((a, p) => a + p + 1, 0);
      assert.equal(stats.tokensPerHead[0], expectTokens);
      assert.equal(stats.rowsRead, expectTokens * KV, "one read per KV head serves the group");
      assert.equal(stats.bytesRead, expectTokens * KV * 2 * D * 4);
    }
  }
});

Deno.test("sparseAttend() without RoPE equals dense attention over the raw keys", () => {
  const T = 40, H = 6, KV = 2, D = 5;
  const { key, value } = setup(T, KV, D, 9, 3);
  const query = randn([1, H, D], { seed: 4 });
  const store = new KvStore({ layers: 1, kvHeads: KV, headDim: D, pageSize: 9 });
  store.append(0, key, value);
  const got = sparseAttend(query, store, [Array(H).fill(selectAll(T))], {
    layer: 0,
    queryPositions: [T - 1],
  });
  const want = denseAttention({ query, key, value });
  assertClose(got.out.data, want.out.data);
});

Deno.test("sparseAttend() over a subset equals masked attention over exactly that subset", () => {
  const T = 300, H = 4, KV = 2, D = 16;
  const { key, value } = setup(T, KV, D, 64, 5);
  const query = randn([1, H, D], { seed: 6 });
  const rope = new Rope({ headDim: D, layout: "adjacent" });
  const kr = rotated(rope, key, range(T));
  const qr = rotated(rope, query, [T - 1]);
  const store = new KvStore({
    layers: 1,
    kvHeads: KV,
    headDim: D,
    pageSize: 64,
    keyForm: "post-rope",
  });
  store.append(0, kr, value);
  // Different selections per KV head; heads 2 and 3 (KV head 1) use different objects.
  const a = headSelection([[0, 4], [60, 70], [250, 300]]);
  const b = headSelection([[10, 11], [129, 131], [299, 300]]);
  const c = headSelection([[0, 300]]);
  const sel: HeadSelection[] = [a, a, b, c];
  const visible = (_t: number, h: number, j: number) => {
    const s = sel[h]!;
    for (let i = 0; i < s.spans.length; i += 2) {
      if (j >= s.spans[i]! && j < s.spans[i + 1]!) return true;
    }
    return false;
  };
  const got = sparseAttend(query, store, [sel], { layer: 0, queryPositions: [T - 1], rope });
  const want = naiveAttention(qr, kr, value, { visible });
  assertClose(got.out.data, want.out, { atol: 2e-5 });
  assertClose(got.lse.data, want.lse, { atol: 2e-5 });
});

Deno.test("sparseAttend() re-numbered positions equal attention with keys rotated to those positions", () => {
  const T = 200, H = 2, KV = 1, D = 8;
  const { key, value } = setup(T, KV, D, 16, 8);
  const query = randn([1, H, D], { seed: 9 });
  const rope = new Rope({ headDim: D });
  // Sinks [0,4) seen at 0..3, window [150,200) seen at 4..53, query at 53.
  const sel = renumberContiguous(headSelection([[0, 4], [150, 200]]));
  assert.equal(sel.queryAt, 53);
  const idx = [...range(4), ...range(50, 150)];
  const seenPos = range(54);
  const sub = (x: Tensor) => {
    const out = zeros("f32", [idx.length, KV, D]);
    idx.forEach((j, r) => {
      for (let i = 0; i < D; i++) out.data[r * D + i] = x.data[j * D + i]!;
    });
    return out;
  };
  const want = denseAttention({
    query: rotated(rope, query, [53]),
    key: rotated(rope, sub(key), seenPos),
    value: sub(value),
  });
  for (const keyForm of ["post-rope", "pre-rope"] as const) {
    const store = new KvStore({ layers: 1, kvHeads: KV, headDim: D, pageSize: 16, keyForm });
    store.append(0, keyForm === "post-rope" ? rotated(rope, key, range(T)) : key, value);
    const got = sparseAttend(query, store, [[sel, sel]], {
      layer: 0,
      queryPositions: [T - 1],
      rope,
    });
    assertClose(got.out.data, want.out.data, { atol: 2e-5, rtol: 1e-4, label: keyForm });
  }
  // Post-RoPE keys whose original positions have gaps (after eviction) rotate per key.
  const store = new KvStore({
    layers: 1,
    kvHeads: KV,
    headDim: D,
    pageSize: 16,
    keyForm: "post-rope",
  });
  store.append(0, rotated(rope, key, range(T)), value);
  store.evict(0, 0, 4, 150); // cache now holds originals 0..3 and 150..199 at indices 0..53
  const gapSel = renumberContiguous(headSelection([[0, 54]]));
  const got = sparseAttend(query, store, [[gapSel, gapSel]], {
    layer: 0,
    queryPositions: [T - 1],
    rope,
  });
  assertClose(got.out.data, want.out.data, { atol: 2e-5, rtol: 1e-4, label: "gap" });
});

Deno.test("sparseAttend() applies YaRN's attention factor and f16 storage", () => {
  const T = 50, H = 2, KV = 2, D = 8;
  const { key, value } = setup(T, KV, D, 8, 11);
  const query = randn([1, H, D], { seed: 12 });
  const rope = new Rope({
    headDim: D,
    scaling: { type: "yarn", factor: 4, originalMaxPosition: 16 },
  });
  const f = rope.attentionFactor;
  assert.ok(f > 1);
  const want = denseAttention(
    { query: rotated(rope, query, [T - 1]), key: rotated(rope, key, range(T)), value },
    { scale: f * f / Math.sqrt(D) },
  );
  const store = new KvStore({
    layers: 1,
    kvHeads: KV,
    headDim: D,
    pageSize: 8,
    dtype: "f16",
    keyForm: "post-rope",
  });
  store.append(0, rotated(rope, key, range(T)), value);
  const got = sparseAttend(query, store, [[selectAll(T), selectAll(T)]], {
    layer: 0,
    queryPositions: [T - 1],
    rope,
  });
  assertClose(got.out.data, want.out.data, { atol: 5e-3, rtol: 5e-3 });
});

Deno.test("sparseAttend() rejects bad input with errors naming the argument", () => {
  const store = new KvStore({ layers: 1, kvHeads: 2, headDim: 4 });
  store.append(0, randn([5, 2, 4]), randn([5, 2, 4]));
  const q = randn([1, 4, 4]);
  const all = selectAll(5);
  const ok = [[all, all, all, all]];
  assert.throws(
    () => sparseAttend(randn([1, 4, 3]), store, ok, { layer: 0, queryPositions: [4] }),
    {
      name: "TypeError",
      message: /query headDim \(3\) does not match store headDim \(4\)/,
    },
  );
  assert.throws(
    () => sparseAttend(randn([1, 3, 4]), store, ok, { layer: 0, queryPositions: [4] }),
    {
      name: "RangeError",
      message: /query heads \(3\) must be a multiple of kvHeads/,
    },
  );
  assert.throws(() => sparseAttend(q, store, [], { layer: 0, queryPositions: [4] }), {
    name: "TypeError",
    message: /selections must have one entry per query token \(1\), got 0/,
  });
  assert.throws(() => sparseAttend(q, store, [[all]], { layer: 0, queryPositions: [4] }), {
    name: "TypeError",
    message: /selections\[0\] must have one HeadSelection per query head \(4\), got 1/,
  });
  const far = headSelection([[0, 9]]);
  assert.throws(
    () => sparseAttend(q, store, [[far, far, far, far]], { layer: 0, queryPositions: [4] }),
    { name: "RangeError", message: /reads up to cache index 9, but the head holds 5 tokens/ },
  );
  assert.throws(() => sparseAttend(q, store, ok, { layer: 0, queryPositions: [] }), {
    name: "TypeError",
    message: /queryPositions must have one entry per query token/,
  });
  assert.throws(() => sparseAttend(q, store, ok, { layer: 0, queryPositions: [NaN] }), {
    name: "RangeError",
    message: /queryPositions\[0\] must be a finite number, got NaN/,
  });
});
