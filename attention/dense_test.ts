// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { denseAttention, denseAttentionInto } from "./dense.ts";
import { mergeStates, mergeStatesInto } from "./merge_states.ts";
import { contiguous, permute, randn, sliceAxis, tensor, zeros } from "../tensor/mod.ts";
import type { Tensor } from "../tensor/types.ts";
import { assertClose, naiveAttention } from "../tests/_util.ts";

function qkv(tq: number, tk: number, h: number, hkv: number, d: number, seed: number) {
  return {
    query: randn([tq, h, d], { seed, layout: "thd" }),
    key: randn([tk, hkv, d], { seed: seed + 1, layout: "thd" }),
    value: randn([tk, hkv, d], { seed: seed + 2, layout: "thd" }),
  };
}

Deno.test("denseAttention() equals the three-loop formula on awkward sizes", () => {
  const cases: Array<[number, number, number, number, number]> = [
    // [queryTokens, keyTokens, heads, kvHeads, headDim]
    [1, 1, 1, 1, 1],
    [1, 3, 2, 1, 3],
    [3, 3, 4, 2, 5],
    [19, 19, 3, 3, 8],
    [1, 97, 8, 2, 16],
    [97, 97, 2, 1, 7],
    [5, 1003, 4, 4, 12],
    [1, 1177, 6, 2, 33],
  ];
  let seed = 10;
  for (const [tq, tk, h, hkv, d] of cases) {
    for (const causal of [true, false]) {
      const x = qkv(tq, tk, h, hkv, d, seed++);
      const got = denseAttention(x, { causal });
      const want = naiveAttention(x.query, x.key, x.value, { causal });
      const label = `tq=${tq} tk=${tk} h=${h} hkv=${hkv} d=${d} causal=${causal}`;
      assertClose(got.out.data, want.out, { atol: 1e-5, rtol: 1e-4, label });
      assertClose(got.lse.data, want.lse, { atol: 1e-5, rtol: 1e-5, label: label + " lse" });
    }
  }
});

Deno.test("denseAttention() honours scale, soft-cap and chunked-prefill offsets", () => {
  const x = qkv(7, 40, 4, 2, 8, 3);
  for (
    const o of [
      { scale: 0.3 },
      { softCap: 2.5 },
      { queryOffset: 20 },
      { queryOffset: 5, keyOffset: 3 },
      { keyOffset: 10, queryOffset: 0 }, // every query before every key: fully masked
    ]
  ) {
    const got = denseAttention(x, o);
    const want = naiveAttention(x.query, x.key, x.value, o);
    assertClose(got.out.data, want.out, { label: JSON.stringify(o) });
    assertClose(got.lse.data, want.lse, { label: JSON.stringify(o) + " lse" });
  }
});

Deno.test("denseAttention() gives out 0 and lse -Infinity for a fully masked row, never NaN", () => {
  const x = qkv(2, 5, 2, 1, 4, 4);
  const r = denseAttention(x, { keyOffset: 100, queryOffset: 0 });
  assert.ok(r.out.data.every((v) => v === 0));
  assert.ok(r.lse.data.every((v) => v === -Infinity));
  const empty = denseAttention({
    ...x,
    key: sliceAxis(x.key, 0, 0, 0),
    value: sliceAxis(x.value, 0, 0, 0),
  });
  assert.ok(empty.out.data.every((v) => v === 0));
  assert.ok(empty.lse.data.every((v) => v === -Infinity));
});

Deno.test("denseAttention() stays finite with logits of ±1e4", () => {
  const x = qkv(3, 50, 2, 2, 4, 5);
  for (const s of [1e4, -1e4]) {
    const r = denseAttention(x, { scale: s, causal: false });
    assert.ok(r.out.data.every(Number.isFinite), `scale ${s}`);
    assert.ok(r.lse.data.every(Number.isFinite), `scale ${s}`);
    const want = naiveAttention(x.query, x.key, x.value, { scale: s, causal: false });
    assertClose(r.out.data, want.out, { atol: 1e-4, rtol: 1e-3 });
  }
});

Deno.test("denseAttention() with GQA equals MHA over repeated KV heads", () => {
  const h = 6, hkv = 2, d = 9, tk = 61, tq = 4;
  const x = qkv(tq, tk, h, hkv, d, 6);
  const g = h / hkv;
  const rep = (t: Tensor) => {
    const out = zeros("f32", [tk, h, d]);
    for (let j = 0; j < tk; j++) {
      for (let hh = 0; hh < h; hh++) {
        for (let i = 0; i < d; i++) {
          out.data[(j * h + hh) * d + i] = t.data[(j * hkv + Math.floor(hh / g)) * d + i]!;
        }
      }
    }
    return out;
  };
  const gqa = denseAttention(x);
  const mha = denseAttention({ query: x.query, key: rep(x.key), value: rep(x.value) });
  assertClose(gqa.out.data, mha.out.data, { atol: 1e-6, rtol: 1e-6 });
  assertClose(gqa.lse.data, mha.lse.data, { atol: 1e-6, rtol: 1e-6 });
});

Deno.test("denseAttention() reads f16 inputs and strided views", () => {
  const x = qkv(3, 33, 4, 2, 8, 7);
  const half = {
    query: contiguous(x.query, "f16"),
    key: contiguous(x.key, "f16"),
    value: contiguous(x.value, "f16"),
  };
  const want = naiveAttention(half.query, half.key, half.value);
  assertClose(denseAttention(half).out.data, want.out, { atol: 1e-5 });
  // A [heads, tokens, d] tensor permuted back to "thd" is a strided view.
  const kHtd = contiguous(permute(x.key, [1, 0, 2]));
  const kView = permute(kHtd, [1, 0, 2], "thd");
  assertClose(denseAttention({ ...x, key: kView }).out.data, denseAttention(x).out.data, {
    atol: 0,
    rtol: 0,
  });
});

Deno.test("mergeStates() of a split equals attention over the whole", () => {
  for (const [tk, cuts] of [[10, [3]], [97, [1, 50, 96]], [1000, [0, 333, 334, 999]]] as const) {
    const x = qkv(2, tk, 4, 2, 8, tk);
    const whole = denseAttention(x, { causal: false });
    const bounds = [0, ...cuts, tk];
    const parts = bounds.slice(1).map((e, i) => {
      const s = bounds[i]!;
      return denseAttention(
        { query: x.query, key: sliceAxis(x.key, 0, s, e), value: sliceAxis(x.value, 0, s, e) },
        { causal: false },
      );
    });
    const merged = mergeStates(parts);
    assertClose(merged.out.data, whole.out.data, { atol: 1e-5, rtol: 1e-4 });
    assertClose(merged.lse.data, whole.lse.data, { atol: 1e-5, rtol: 1e-5 });
    // Order does not matter, and in-place accumulation gives the same.
    assertClose(mergeStates([...parts].reverse()).out.data, whole.out.data, { atol: 1e-5 });
    const acc = parts[0]!;
    for (const p of parts.slice(1)) mergeStatesInto(acc, [acc, p]);
    assertClose(acc.out.data, whole.out.data, { atol: 1e-5 });
  }
});

Deno.test("mergeStates() ignores empty states and stays finite at extreme lse", () => {
  const x = qkv(1, 8, 2, 1, 4, 9);
  const full = denseAttention(x, { causal: false });
  const empty = denseAttention(x, { keyOffset: 50, queryOffset: 0 });
  const m = mergeStates([empty, full, empty]);
  assert.deepEqual(Array.from(m.out.data), Array.from(full.out.data));
  assert.deepEqual(Array.from(m.lse.data), Array.from(full.lse.data));
  const allEmpty = mergeStates([empty, empty]);
  assert.ok(allEmpty.lse.data.every((v) => v === -Infinity));
  assert.ok(allEmpty.out.data.every((v) => v === 0));
  const big = { out: full.out, lse: tensor(new Float32Array([1e4, -1e4]), [1, 2]) };
  const r = mergeStates([big, full]);
  assert.ok(r.out.data.every(Number.isFinite));
});

Deno.test("denseAttention() rejects bad input with errors naming the argument", () => {
  const x = qkv(2, 5, 4, 2, 8, 1);
  assert.throws(
    () => denseAttention({ ...x, query: randn([2, 4, 7]) }),
    { name: "TypeError", message: /query headDim \(7\) does not match key headDim \(8\)/ },
  );
  assert.throws(
    () => denseAttention({ ...x, query: randn([2, 3, 8]) }),
    {
      name: "RangeError",
      message: /query heads \(3\) must be a multiple of kvHeads, got kvHeads 2/,
    },
  );
  assert.throws(
    () => denseAttention({ ...x, key: randn([5, 8]) }),
    {
      name: "TypeError",
      message: /key must have shape \[tokens, heads, headDim\], got shape \[5, 8\]/,
    },
  );
  assert.throws(
    () => denseAttention({ ...x, value: randn([4, 2, 8]) }),
    { name: "TypeError", message: /value shape \[4, 2, 8\] must equal key shape \[5, 2, 8\]/ },
  );
  assert.throws(() => denseAttention(x, { scale: NaN }), {
    name: "RangeError",
    message: /scale must be a finite number, got NaN/,
  });
  assert.throws(() => denseAttention(x, { softCap: -1 }), {
    name: "RangeError",
    message: /softCap must be a positive finite number, got -1/,
  });
  assert.throws(() => denseAttention(x, { queryOffset: 1.5 }), {
    name: "RangeError",
    message: /queryOffset must be an integer, got 1.5/,
  });
  assert.throws(
    () => denseAttention({ ...x, key: tensor(new Int32Array(80), [5, 2, 8]) as never }),
    { name: "TypeError", message: /key dtype must be "f32" or "f16", got "i32"/ },
  );
  assert.throws(
    () => denseAttentionInto({ out: zeros("f32", [2, 4, 7]), lse: zeros("f32", [2, 4]) }, x),
    { name: "TypeError", message: /state must hold out \[2, 4, 8\]/ },
  );
  assert.throws(() => mergeStates([]), { name: "TypeError", message: /non-empty array/ });
});
