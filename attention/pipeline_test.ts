// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { AttentionPipeline } from "./pipeline.ts";
import { denseAttention } from "./dense.ts";
import { StreamingLlm } from "./streaming_llm.ts";
import { LmInfinite } from "./lm_infinite.ts";
import { UnionSelector } from "./union.ts";
import { DenseSelector, type SelectContext, type Selector } from "./stages.ts";
import { type HeadSelection, headSelection } from "./selection.ts";
import { SinkWindow } from "../kv/sink_window.ts";
import { Rope } from "../positional/rope.ts";
import { randn, sliceAxis, type Tensor, zeros } from "../tensor/mod.ts";
import { assertClose, naiveAttention } from "../tests/_util.ts";

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

function stream(T: number, H: number, KV: number, D: number, seed: number) {
  return {
    q: randn([T, H, D], { seed, layout: "thd" }),
    k: randn([T, KV, D], { seed: seed + 1, layout: "thd" }),
    v: randn([T, KV, D], { seed: seed + 2, layout: "thd" }),
  };
}

/** Runs a pipeline over a stream in the given chunk sizes (the rest one token at a time). */
function run(pipe: AttentionPipeline, x: ReturnType<typeof stream>, chunks: number[], layer = 0) {
  const T = x.q.shape[0]!;
  const out = zeros("f32", x.q.shape);
  let t = 0;
  const sizes = [...chunks];
  while (t < T) {
    const n = Math.min(sizes.shift() ?? 1, T - t);
    const r = pipe.attend(
      layer,
      sliceAxis(x.q, 0, t, t + n),
      sliceAxis(x.k, 0, t, t + n),
      sliceAxis(x.v, 0, t, t + n),
    );
    out.data.set(r.out.data, t * x.q.shape[1]! * x.q.shape[2]!);
    t += n;
  }
  return out;
}

function denseOracle(rope: Rope, x: ReturnType<typeof stream>): Tensor<"f32"> {
  return denseAttention({
    query: rope.apply(x.q as Tensor<"f32">, 0),
    key: rope.apply(x.k as Tensor<"f32">, 0),
    value: x.v,
  }).out;
}

Deno.test("AttentionPipeline (dense) equals dense attention for any prefill chunking and decode", () => {
  const cases: Array<[number, number, number, number, number[]]> = [
    // [T, heads, kvHeads, headDim, chunk sizes]
    [1, 1, 1, 2, [1]],
    [3, 2, 1, 4, [3]],
    [19, 4, 2, 8, [5, 7]],
    [97, 3, 3, 6, [97]],
    [130, 8, 2, 16, [64, 3, 50]],
  ];
  let seed = 1;
  for (const [T, H, KV, D, chunks] of cases) {
    const x = stream(T, H, KV, D, seed++);
    const rope = new Rope({ headDim: D });
    const want = denseOracle(rope, x);
    for (const keyForm of ["post-rope", "pre-rope"] as const) {
      const pipe = new AttentionPipeline({
        layers: 2,
        heads: H,
        kvHeads: KV,
        headDim: D,
        rope,
        keyForm,
        pageSize: 16,
      });
      const got = run(pipe, x, chunks, 1);
      assertClose(got.data, want.data, { atol: 2e-5, rtol: 1e-4, label: `T=${T} ${keyForm}` });
      assert.equal(pipe.position(1), T);
      assert.equal(pipe.position(0), 0);
    }
  }
});

Deno.test("StreamingLlm with n <= sinks + window equals dense", () => {
  const T = 40, H = 4, KV = 2, D = 8;
  const x = stream(T, H, KV, D, 11);
  const rope = new Rope({ headDim: D });
  const pipe = new AttentionPipeline({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: D,
    rope,
    selector: new StreamingLlm({ sinks: 4, window: 36 }),
    policy: new SinkWindow({ sinks: 4, window: 36, slack: 0 }),
  });
  assertClose(run(pipe, x, [17]).data, denseOracle(rope, x).data, { atol: 2e-5 });
});

/** Reference StreamingLLM step: cache = first S + last W keys, rotated at slot indices. */
function streamingReference(x: ReturnType<typeof stream>, rope: Rope, S: number, W: number) {
  const [T, H, D] = x.q.shape as [number, number, number];
  const KV = x.k.shape[1]!;
  const out = new Float64Array(T * H * D);
  for (let t = 0; t < T; t++) {
    const n = t + 1;
    const idx = n <= S + W ? range(n) : [...range(S), ...range(W, n - W)];
    const k = zeros("f32", [idx.length, KV, D]), v = zeros("f32", [idx.length, KV, D]);
    idx.forEach((j, r) => {
      k.data.set(x.k.data.subarray(j * KV * D, (j + 1) * KV * D), r * KV * D);
      v.data.set(x.v.data.subarray(j * KV * D, (j + 1) * KV * D), r * KV * D);
    });
    const q = sliceAxis(x.q, 0, t, t + 1);
    const r = naiveAttention(rope.apply(q as Tensor<"f32">, idx.length - 1), rope.apply(k, 0), v);
    out.set(r.out, t * H * D);
  }
  return out;
}

Deno.test("StreamingLlm re-indexes positions within the cache as the paper does", () => {
  const T = 120, H = 2, KV = 1, D = 8, S = 4, W = 16;
  const x = stream(T, H, KV, D, 12);
  const rope = new Rope({ headDim: D });
  const want = streamingReference(x, rope, S, W);
  for (const slack of [0, 5, 64]) {
    for (const chunks of [[1], [50, 7], [120]]) {
      const pipe = new AttentionPipeline({
        layers: 1,
        heads: H,
        kvHeads: KV,
        headDim: D,
        rope,
        pageSize: 8,
        selector: new StreamingLlm({ sinks: S, window: W }),
        policy: new SinkWindow({ sinks: S, window: W, slack }),
      });
      assertClose(run(pipe, x, chunks).data, want, {
        atol: 2e-5,
        rtol: 1e-4,
        label: `slack ${slack} chunks ${chunks}`,
      });
    }
  }
});

Deno.test("SinkWindow keeps the KV store constant over 100k decode steps", () => {
  const H = 2, KV = 1, D = 4, S = 4, W = 32;
  const pipe = new AttentionPipeline({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: D,
    rope: new Rope({ headDim: D }),
    pageSize: 16,
    selector: new StreamingLlm({ sinks: S, window: W }),
    policy: new SinkWindow({ sinks: S, window: W, slack: 16 }),
  });
  const q = randn([1, H, D], { seed: 1 }),
    k = randn([1, KV, D], { seed: 2 }),
    v = randn([1, KV, D], { seed: 3 });
  let held = 0;
  for (let step = 0; step < 100_000; step++) {
    const { out } = pipe.attend(0, q, k, v);
    if (step === 1000) held = pipe.bytesHeld();
    if (step > 1000 && step % 997 === 0) {
      assert.equal(pipe.bytesHeld(), held, `step ${step}`);
      assert.ok(out.data.every(Number.isFinite));
    }
  }
  assert.equal(pipe.bytesHeld(), held);
  assert.ok(pipe.store.length(0, 0) <= S + W + 16);
  assert.equal(pipe.position(0), 100_000);
});

Deno.test("LmInfinite equals dense while n <= localWindow and caps distances beyond", () => {
  const T = 90, H = 2, KV = 2, D = 8, G = 3, L = 30;
  const x = stream(T, H, KV, D, 13);
  const rope = new Rope({ headDim: D });
  const mk = () =>
    new AttentionPipeline({
      layers: 1,
      heads: H,
      kvHeads: KV,
      headDim: D,
      rope,
      selector: new LmInfinite({ globalTokens: G, localWindow: L }),
      policy: new SinkWindow({ sinks: G, window: L, slack: 7 }),
    });
  const first = stream(L, H, KV, D, 13);
  assertClose(run(mk(), first, [L]).data, denseOracle(rope, first).data, { atol: 2e-5 });
  // Beyond: key j is visible iff j < G or t − j < L, seen at distance min(t − j, L).
  const got = run(mk(), x, [40, 1, 1, 20]);
  for (let t = L; t < T; t += 13) {
    const w0 = Math.max(G, t + 1 - L);
    const idx = [...range(G), ...range(t + 1 - w0, w0)];
    const k = zeros("f32", [idx.length, KV, D]), v = zeros("f32", [idx.length, KV, D]);
    const pos: number[] = [];
    idx.forEach((j, r) => {
      k.data.set(x.k.data.subarray(j * KV * D, (j + 1) * KV * D), r * KV * D);
      v.data.set(x.v.data.subarray(j * KV * D, (j + 1) * KV * D), r * KV * D);
      pos.push(t - Math.min(t - j, L));
    });
    const want = naiveAttention(
      rope.apply(sliceAxis(x.q, 0, t, t + 1) as Tensor<"f32">, t),
      rope.apply(k, pos),
      v,
    );
    assertClose(got.data.subarray(t * H * D, (t + 1) * H * D), want.out, {
      atol: 2e-5,
      rtol: 1e-4,
      label: `t=${t}`,
    });
  }
});

/** A test selector: one fixed extra span at original positions (like a retrieved chunk). */
class FixedSpan implements Selector {
  readonly name = "fixed-span";
  readonly positions = "original" as const;
  readonly needs = { kind: "all" } as const;
  constructor(readonly start: number, readonly end: number) {}
  select(ctx: SelectContext): HeadSelection {
    const e = Math.min(this.end, ctx.length);
    return headSelection(e > this.start ? [[this.start, e]] : []);
  }
}

Deno.test("UnionSelector gives one softmax over sinks ∪ window ∪ a retrieved span", () => {
  const T = 100, H = 4, KV = 2, D = 8, S = 2, W = 10;
  const x = stream(T, H, KV, D, 14);
  const rope = new Rope({ headDim: D });
  const pipe = new AttentionPipeline({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: D,
    rope,
    selector: new UnionSelector([
      new StreamingLlm({ sinks: S, window: W, reindex: false }),
      new FixedSpan(40, 50),
    ]),
  });
  const got = run(pipe, x, [T]);
  const qr = rope.apply(x.q as Tensor<"f32">, 0), kr = rope.apply(x.k as Tensor<"f32">, 0);
  const visible = (t: number, _h: number, j: number) =>
    j <= t && (j < S || t - j < W || (j >= 40 && j < 50));
  const want = naiveAttention(qr, kr, x.v, { visible, causal: true });
  assertClose(got.data, want.out, { atol: 2e-5, rtol: 1e-4 });
  // The union of sink+window with dense is dense.
  const pipe2 = new AttentionPipeline({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: D,
    rope,
    selector: new UnionSelector([
      new StreamingLlm({ sinks: S, window: W, reindex: false }),
      new DenseSelector(),
    ]),
  });
  assertClose(run(pipe2, x, [33]).data, denseOracle(rope, x).data, { atol: 2e-5 });
});

Deno.test("AttentionPipeline accounts tokens and bytes read per step", () => {
  const H = 4, KV = 2, D = 8;
  const x = stream(50, H, KV, D, 15);
  const pipe = new AttentionPipeline({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: D,
    selector: new StreamingLlm({ sinks: 4, window: 8 }),
    policy: new SinkWindow({ sinks: 4, window: 8 }),
  });
  run(pipe, x, [49]);
  pipe.attend(0, sliceAxis(x.q, 0, 49, 50), sliceAxis(x.k, 0, 49, 50), sliceAxis(x.v, 0, 49, 50));
  assert.deepEqual([...pipe.lastStats.tokensPerHead], [12, 12, 12, 12]);
  assert.equal(pipe.lastStats.rowsRead, 12 * KV);
  assert.equal(pipe.lastStats.bytesRead, 12 * KV * 2 * D * 4);
  assert.equal(pipe.stats.queries, 51);
});

Deno.test("AttentionPipeline rejects unsupported combinations at construction", () => {
  const base = { layers: 1, heads: 4, kvHeads: 2, headDim: 8 };
  assert.throws(
    () =>
      new AttentionPipeline({
        ...base,
        selector: new DenseSelector(),
        policy: new SinkWindow({ window: 8 }),
      }),
    {
      name: "TypeError",
      message:
        /cache policy sink-window keeps sinks 4 \+ window 8, but selector dense may read the full history/,
    },
  );
  assert.throws(
    () =>
      new AttentionPipeline({
        ...base,
        selector: new StreamingLlm({ window: 16 }),
        policy: new SinkWindow({ window: 8 }),
      }),
    {
      name: "TypeError",
      message:
        /keeps sinks 4 \+ window 8, but selector streaming-llm may read sinks 4 \+ window 16/,
    },
  );
  assert.throws(
    () =>
      new AttentionPipeline({
        ...base,
        rope: new Rope({
          headDim: 8,
          scaling: { type: "dynamic-ntk", factor: 2, originalMaxPosition: 16 },
        }),
        keyForm: "post-rope",
      }),
    { name: "TypeError", message: /dynamic NTK .* needs keyForm "pre-rope"/ },
  );
  assert.throws(
    () => new AttentionPipeline({ ...base, rope: new Rope({ headDim: 4 }) }),
    { name: "TypeError", message: /rope headDim \(4\) does not match headDim \(8\)/ },
  );
  assert.throws(() => new AttentionPipeline({ ...base, heads: 3 }), {
    name: "RangeError",
    message: /heads \(3\) must be a multiple of kvHeads/,
  });
  const pipe = new AttentionPipeline(base);
  assert.throws(() => pipe.attend(1, randn([1, 4, 8]), randn([1, 2, 8]), randn([1, 2, 8])), {
    name: "RangeError",
    message: /layer must be an integer in \[0, 1\), got 1/,
  });
  assert.throws(() => pipe.attend(0, randn([1, 4, 8]), randn([2, 2, 8]), randn([2, 2, 8])), {
    name: "TypeError",
    message: /key shape must be \[1, 2, 8\], got \[2, 2, 8\]/,
  });
});

Deno.test("AttentionPipeline with dynamic NTK matches a pre-RoPE oracle at the current length", () => {
  const T = 40, H = 2, KV = 1, D = 8;
  const x = stream(T, H, KV, D, 16);
  const rope = new Rope({
    headDim: D,
    scaling: { type: "dynamic-ntk", factor: 2, originalMaxPosition: 16 },
  });
  const pipe = new AttentionPipeline({ layers: 1, heads: H, kvHeads: KV, headDim: D, rope });
  const got = pipe.attend(0, x.q, x.k, x.v).out;
  const r = rope.forSequenceLength(T);
  const want = denseAttention({
    query: r.apply(x.q as Tensor<"f32">, 0),
    key: r.apply(x.k as Tensor<"f32">, 0),
    value: x.v,
  }).out;
  assertClose(got.data, want.data, { atol: 2e-5 });
});
