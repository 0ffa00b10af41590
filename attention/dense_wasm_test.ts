// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { denseAttentionWasm, denseAttentionWasmInto } from "./dense_wasm.ts";
import { denseAttention, type DenseAttentionOptions } from "./dense.ts";
import { WasmHeap, type WasmKernelKind } from "./wasm_heap.ts";
import { contiguous, copyInto, permute, randn, sliceAxis, zeros } from "../tensor/mod.ts";
import type { FloatDType, Tensor } from "../tensor/types.ts";
import type { AttentionInput } from "./types.ts";
import { assertClose, naiveAttention } from "../tests/_util.ts";

/**
 * Tolerance against the f64 three-loop oracle: |Δ| ≤ ATOL + RTOL·|oracle|, for `out` and
 * `lse`. The kernel sums q·k in f32 with fused multiply-adds and exponentiates with a
 * ~1 ulp polynomial; the reference `denseAttention` meets the same bound.
 */
const ATOL = 1e-5, RTOL = 1e-5;

const KINDS: readonly WasmKernelKind[] = ["relaxed-simd", "simd"];
const heaps = new Map<WasmKernelKind, WasmHeap>();
async function heapOf(kind: WasmKernelKind): Promise<WasmHeap> {
  let h = heaps.get(kind);
  if (h === undefined) {
    h = await WasmHeap.create({ maxBytes: 256 << 20, kernel: kind });
    heaps.set(kind, h);
  }
  return h;
}

/** Random Q (outside the heap), K and V (inside it), from seeds. */
function qkvIn(
  heap: WasmHeap,
  [tq, tk, h, hkv, d]: readonly number[],
  seed: number,
): { query: Tensor<FloatDType>; key: Tensor<"f32">; value: Tensor<"f32"> } {
  const key = heap.alloc("f32", [tk!, hkv!, d!], { layout: "thd" });
  const value = heap.alloc("f32", [tk!, hkv!, d!], { layout: "thd" });
  copyInto(key, randn([tk!, hkv!, d!], { seed: seed + 1 }));
  copyInto(value, randn([tk!, hkv!, d!], { seed: seed + 2 }));
  return { query: randn([tq!, h!, d!], { seed, layout: "thd" }), key, value };
}

function check(
  x: AttentionInput,
  options: DenseAttentionOptions,
  label: string,
  tol = { atol: ATOL, rtol: RTOL },
): void {
  const got = denseAttentionWasm(x, options);
  const want = naiveAttention(x.query, x.key, x.value, options);
  assertClose(got.out.data, want.out, { ...tol, label });
  assertClose(got.lse.data, want.lse, { ...tol, label: `${label} lse` });
  // And the pure-TS reference agrees with it to the same tolerance.
  const ref = denseAttention(x, options);
  assertClose(got.out.data, ref.out.data, { ...tol, label: `${label} vs denseAttention` });
}

for (const kind of KINDS) {
  Deno.test(`denseAttentionWasm() [${kind}] equals the oracle on awkward sizes, MHA/GQA/MQA`, async () => {
    const heap = await heapOf(kind);
    const cases: Array<[number, number, number, number, number]> = [
      // [queryTokens, keyTokens, heads, kvHeads, headDim]
      [1, 1, 1, 1, 1],
      [1, 3, 2, 1, 3], // MQA, group 2, headDim 3 (all tail)
      [1, 63, 4, 4, 8], // MHA decode: lanes span four KV heads
      [1, 65, 8, 2, 12], // GQA 4: one KV head per group of lanes
      [1, 130, 6, 2, 100], // GQA 3: groups straddle KV heads
      [1, 130, 16, 2, 64], // GQA 8: two groups per KV head
      [1, 1177, 8, 4, 128], // group 2, several key blocks
      [3, 3, 4, 2, 5],
      [63, 63, 2, 1, 8],
      [65, 65, 4, 4, 12],
      [130, 130, 2, 2, 100], // 128 rows per call, then 2: one group spans both KV heads
      [40, 40, 32, 32, 4], // 1024 rows per call at most: 32 per KV head, then 8
      [33, 130, 6, 3, 33], // chunked prefill (queries are the last 33 keys)
    ];
    let seed = 100;
    for (const c of cases) {
      const x = qkvIn(heap, c, seed++);
      for (const causal of [true, false]) check(x, { causal }, `${kind} ${c} causal=${causal}`);
      heap.free(x.key);
      heap.free(x.value);
    }
    assert.equal(heap.bytesAllocated(), 0);
  });

  Deno.test(`denseAttentionWasm() [${kind}] honours scale, soft-cap and offsets`, async () => {
    const heap = await heapOf(kind);
    for (const shape of [[7, 40, 4, 2, 8], [5, 130, 4, 4, 13]] as const) {
      const x = qkvIn(heap, shape, 3);
      const cases: DenseAttentionOptions[] = [
        { scale: 0.3 },
        { softCap: 2.5 },
        { softCap: 0.05, scale: 3 }, // saturated cap
        { queryOffset: 20 },
        { queryOffset: 5, keyOffset: 3 },
        { queryOffset: 66, keyOffset: 0, causal: true }, // mid-block causal limits
        { keyOffset: 10, queryOffset: 0 }, // every query before every key: fully masked
        { keyOffset: -1000, causal: true },
      ];
      for (const o of cases) check(x, o, `${kind} ${shape} ${JSON.stringify(o)}`);
      heap.free(x.key);
      heap.free(x.value);
    }
  });

  Deno.test(`denseAttentionWasm() [${kind}] stays finite and close with logits of ±1e4`, async () => {
    const heap = await heapOf(kind);
    for (const shape of [[3, 50, 2, 2, 4], [1, 200, 8, 2, 16], [1, 70, 4, 4, 7]] as const) {
      const x = qkvIn(heap, shape, 5);
      for (const scale of [1e4, -1e4]) {
        const r = denseAttentionWasm(x, { scale, causal: false });
        assert.ok(r.out.data.every(Number.isFinite), `${shape} scale ${scale}`);
        assert.ok(r.lse.data.every(Number.isFinite), `${shape} scale ${scale}`);
        // The f32 sum of q·k is amplified 1e4-fold, hence the looser bound (the reference's too).
        check(x, { scale, causal: false }, `${kind} ${shape} scale=${scale}`, {
          atol: 1e-4,
          rtol: 1e-4,
        });
      }
      heap.free(x.key);
      heap.free(x.value);
    }
  });
}

Deno.test("denseAttentionWasm() gives out 0 and lse -Infinity for fully masked rows, never NaN", async () => {
  const heap = await heapOf("relaxed-simd");
  const x = qkvIn(heap, [5, 9, 4, 2, 6], 4);
  // Queries 0..4 sit at positions 2..6 and keys at 4..12: rows 0 and 1 see nothing.
  const r = denseAttentionWasm(x, { keyOffset: 4, queryOffset: 2 });
  for (let t = 0; t < 5; t++) {
    for (let h = 0; h < 4; h++) {
      const lse = r.lse.data[t * 4 + h]!;
      const out = r.out.data.subarray((t * 4 + h) * 6, (t * 4 + h + 1) * 6);
      if (t < 2) {
        assert.equal(lse, -Infinity);
        assert.ok(out.every((v) => v === 0));
      } else {
        assert.ok(Number.isFinite(lse) && out.every(Number.isFinite));
      }
    }
  }
  // No keys at all: a zero-length view of the heap tensors.
  const none = denseAttentionWasm({
    query: x.query,
    key: sliceAxis(x.key, 0, 9, 9),
    value: sliceAxis(x.value, 0, 9, 9),
  });
  assert.ok(none.out.data.every((v) => v === 0));
  assert.ok(none.lse.data.every((v) => v === -Infinity));
  // No queries: an empty result.
  const empty = denseAttentionWasm({ ...x, query: zeros("f32", [0, 4, 6]) });
  assert.equal(empty.out.data.length, 0);
  heap.free(x.key);
  heap.free(x.value);
});

Deno.test("denseAttentionWasm() reads strided views of heap tensors and f16 or heap queries", async () => {
  const heap = await heapOf("relaxed-simd");
  const x = qkvIn(heap, [4, 150, 8, 2, 12], 8);
  // A window of tokens is a view with an offset.
  const win = {
    query: x.query,
    key: sliceAxis(x.key, 0, 17, 100),
    value: sliceAxis(x.value, 0, 17, 100),
  };
  check(win, {}, "token window");
  // A head-major ("htd") cache permuted to [tokens, kvHeads, headDim] has strides [d, T·d, 1].
  const keyHtd = heap.alloc("f32", [2, 150, 12], { layout: "htd" });
  copyInto(keyHtd, contiguous(permute(x.key, [1, 0, 2])));
  const keyView = permute(keyHtd, [1, 0, 2], "thd");
  const viaView = denseAttentionWasm({ ...x, key: keyView });
  const direct = denseAttentionWasm(x);
  assertClose(viaView.out.data, direct.out.data, { atol: 0, rtol: 0, label: "htd view" });
  // Queries in f16, or in the heap, give the reference's results on the same values.
  const q16 = contiguous(x.query, "f16");
  check({ ...x, query: q16 }, {}, "f16 query");
  const qHeap = heap.alloc("f32", [4, 8, 12]);
  copyInto(qHeap, x.query);
  assertClose(denseAttentionWasm({ ...x, query: qHeap }).out.data, direct.out.data, {
    atol: 0,
    rtol: 0,
  });
  for (const t of [x.key, x.value, keyHtd, qHeap]) heap.free(t);
});

Deno.test("denseAttentionWasmInto() overwrites every element of a reused state", async () => {
  const heap = await heapOf("relaxed-simd");
  const x = qkvIn(heap, [6, 20, 4, 1, 9], 12);
  const options = { keyOffset: 3, queryOffset: 0 }; // rows 0..2 fully masked
  const want = denseAttentionWasm(x, options);
  const state = { out: zeros("f32", [6, 4, 9]), lse: zeros("f32", [6, 4]) };
  state.out.data.fill(NaN);
  state.lse.data.fill(NaN);
  denseAttentionWasmInto(state, x, options);
  assert.deepEqual(Array.from(state.out.data), Array.from(want.out.data));
  assert.deepEqual(Array.from(state.lse.data), Array.from(want.lse.data));
  assert.throws(() => denseAttentionWasmInto({ ...state, lse: zeros("f32", [6, 3]) }, x), {
    name: "TypeError",
    message: /state must hold out \[6, 4, 9\] and lse \[6, 4\]/,
  });
  heap.free(x.key);
  heap.free(x.value);
});

Deno.test("denseAttentionWasm() on a heap with the js kernel is denseAttention exactly", async () => {
  const heap = await heapOf("js");
  const x = qkvIn(heap, [9, 70, 6, 2, 10], 20);
  for (const o of [{}, { causal: false, softCap: 3 }, { queryOffset: 30 }]) {
    const got = denseAttentionWasm(x, o);
    const want = denseAttention(x, o);
    assert.deepEqual(Array.from(got.out.data), Array.from(want.out.data));
    assert.deepEqual(Array.from(got.lse.data), Array.from(want.lse.data));
  }
  heap.free(x.key);
  heap.free(x.value);
});

Deno.test("denseAttentionWasm() keeps working on old tensors after the heap grows", async () => {
  const heap = await WasmHeap.create({ maxBytes: 64 << 20 });
  const x = qkvIn(heap, [1, 40, 4, 2, 8], 30);
  const before = denseAttentionWasm(x);
  const big = heap.alloc("f32", [6 << 20]); // grows the memory: x's arrays view an older buffer
  const y = qkvIn(heap, [1, 40, 4, 2, 8], 30); // and new tensors land in the new one
  const after = denseAttentionWasm(x);
  assert.deepEqual(Array.from(after.out.data), Array.from(before.out.data));
  assert.deepEqual(Array.from(denseAttentionWasm(y).out.data), Array.from(before.out.data));
  // Key in the old buffer, value in the new one: still one heap.
  check({ ...x, value: y.value }, {}, "mixed buffers");
  heap.free(big);
});

Deno.test("denseAttentionWasm() rejects keys and values outside one heap, f16 caches and bad views", async () => {
  const heap = await heapOf("relaxed-simd");
  const x = qkvIn(heap, [1, 5, 4, 2, 8], 1);
  assert.throws(() => denseAttentionWasm({ ...x, key: randn([5, 2, 8]) }), {
    name: "TypeError",
    message: /key must be allocated in a WasmHeap \(use heap.alloc\(\) and write into it\)/,
  });
  assert.throws(() => denseAttentionWasm({ ...x, value: randn([5, 2, 8]) }), {
    name: "TypeError",
    message: /value must be allocated in a WasmHeap/,
  });
  const other = await WasmHeap.create({ maxBytes: 1 << 20 });
  const foreign = other.alloc("f32", [5, 2, 8]);
  assert.throws(() => denseAttentionWasm({ ...x, value: foreign }), {
    name: "TypeError",
    message: /key and value must be allocated in the same WasmHeap/,
  });
  const k16 = heap.alloc("f16", [5, 2, 8]);
  assert.throws(() => denseAttentionWasm({ ...x, key: k16 }), {
    name: "TypeError",
    message:
      /key dtype must be "f32" \(the WASM kernel reads f32; use denseAttention for f16\), got "f16"/,
  });
  // A hand-made view whose last token lies past the end of its array.
  assert.throws(() => denseAttentionWasm({ ...x, key: { ...x.key, offset: 8 } }), {
    name: "RangeError",
    message: /key view must lie inside its data \(length 80\), got elements 8\.\.87/,
  });
  // Shape and option errors are denseAttention's.
  assert.throws(() => denseAttentionWasm({ ...x, query: randn([1, 4, 7]) }), {
    name: "TypeError",
    message: /query headDim \(7\) does not match key headDim \(8\)/,
  });
  assert.throws(() => denseAttentionWasm(x, { softCap: -1 }), {
    name: "RangeError",
    message: /softCap must be a positive finite number, got -1/,
  });
  assert.throws(() => denseAttentionWasm(x, { causal: "yes" as never }), {
    name: "TypeError",
    message: /causal must be a boolean, got "yes"/,
  });
  for (const t of [x.key, x.value, k16]) heap.free(t);
});

Deno.test("the shipped WASM bytes are a fresh build of attention.as.ts", async () => {
  // Rebuilds both kernel variants with the pinned compiler (npm:assemblyscript, from the
  // npm cache) and compares the generated module byte for byte; `deno run -A
  // _tools/build_wasm.ts --check` does the same from the command line.
  const { renderModule } = await import("../_tools/build_wasm.ts");
  const fresh = await renderModule();
  const shipped = await Deno.readTextFile(new URL("./_wasm/attention_wasm.ts", import.meta.url));
  assert.ok(
    fresh === shipped,
    "attention/_wasm/attention_wasm.ts is stale: run _tools/build_wasm.ts",
  );
});
