// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { LongHeads } from "./long_heads.ts";
import { AttentionPipeline } from "./pipeline.ts";
import { Rope } from "../positional/rope.ts";
import { randn, Rng, sliceAxis, type Tensor, tensor, zeros } from "../tensor/mod.ts";
import { assertClose } from "../tests/_util.ts";

function stream(T: number, H: number, KV: number, D: number, seed: number) {
  return {
    q: randn([T, H, D], { seed, layout: "thd" }) as Tensor<"f32">,
    k: randn([T, KV, D], { seed: seed + 1, layout: "thd" }) as Tensor<"f32">,
    v: randn([T, KV, D], { seed: seed + 2, layout: "thd" }) as Tensor<"f32">,
  };
}

function run(pipe: AttentionPipeline, x: ReturnType<typeof stream>, chunk: number): Tensor<"f32"> {
  const T = x.q.shape[0]!;
  const out = zeros("f32", x.q.shape);
  for (let t = 0; t < T; t += chunk) {
    const e = Math.min(T, t + chunk);
    const r = pipe.attend(
      0,
      sliceAxis(x.q, 0, t, e),
      sliceAxis(x.k, 0, t, e),
      sliceAxis(x.v, 0, t, e),
    );
    out.data.set(r.out.data, t * x.q.shape[1]! * x.q.shape[2]!);
  }
  return out;
}

Deno.test("LongHeads equals dense while the cache is within the selective threshold", () => {
  const T = 200, H = 4, KV = 2, D = 8;
  const x = stream(T, H, KV, D, 1);
  const rope = new Rope({ headDim: D });
  const base = { layers: 1, heads: H, kvHeads: KV, headDim: D, rope };
  const dense = run(new AttentionPipeline(base), x, 37);
  const lh = new LongHeads({ chunkSize: 16, attentionLength: 64, selectiveThreshold: 256 });
  assertClose(run(new AttentionPipeline({ ...base, selector: lh }), x, 37).data, dense.data, {
    atol: 1e-5,
  });
});

Deno.test("LongHeads with attentionLength >= context equals dense (uniform position shift)", () => {
  for (const [T, w, chunk] of [[97, 8, 5], [130, 16, 130], [301, 4, 33]] as const) {
    const H = 2, KV = 1, D = 8;
    const x = stream(T, H, KV, D, T);
    const rope = new Rope({ headDim: D });
    const base = { layers: 1, heads: H, kvHeads: KV, headDim: D, rope };
    const dense = run(new AttentionPipeline(base), x, chunk);
    const A = Math.ceil((T + 1) / w) * w;
    for (const gqa of ["query-head", "kv-head"] as const) {
      for (const chunkScore of ["summary", "key-bound"] as const) {
        const lh = new LongHeads({
          chunkSize: w,
          attentionLength: A,
          selectiveThreshold: 3 * w,
          gqa,
          chunkScore,
        });
        const got = run(new AttentionPipeline({ ...base, selector: lh }), x, chunk);
        assertClose(got.data, dense.data, {
          atol: 2e-5,
          rtol: 1e-4,
          label: `T=${T} w=${w} ${gqa} ${chunkScore}`,
        });
      }
    }
  }
});

Deno.test("LongHeads windows force first, previous and current chunks, stay within A, renumber contiguously", () => {
  const T = 700, H = 2, KV = 1, D = 8, w = 16, A = 128;
  const x = stream(T, H, KV, D, 5);
  const lh = new LongHeads({ chunkSize: w, attentionLength: A });
  const pipe = new AttentionPipeline({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: D,
    rope: new Rope({ headDim: D }),
    selector: lh,
  });
  for (let t = 0; t < T; t++) {
    pipe.attend(
      0,
      sliceAxis(x.q, 0, t, t + 1),
      sliceAxis(x.k, 0, t, t + 1),
      sliceAxis(x.v, 0, t, t + 1),
    );
    if (t < A) continue;
    const a = Math.floor(t / w);
    for (const hs of pipe.lastSelection!) {
      const s = hs.spans;
      let n = 0;
      const covered = new Set<number>();
      for (let i = 0; i < s.length; i += 2) {
        n += s[i + 1]! - s[i]!;
        for (let j = s[i]!; j < s[i + 1]!; j++) covered.add(j);
      }
      assert.ok(n <= A, `t=${t}: ${n} keys > A`);
      assert.ok(covered.has(0) && covered.has(w - 1), "first chunk");
      assert.ok(covered.has(a * w - 1) && covered.has((a - 1) * w), "previous chunk");
      assert.ok(covered.has(t), "own key");
      assert.equal(s[s.length - 1], t + 1);
      // seenAt are contiguous: 0, len0, len0+len1, …; the query sits on its own key's slot.
      let p = 0;
      for (let i = 0; i < s.length; i += 2) {
        assert.equal(hs.seenAt![i / 2], p);
        p += s[i + 1]! - s[i]!;
      }
      assert.equal(hs.queryAt, p - 1);
    }
  }
  assert.equal(lh.fallbackSummaries, 0, "every summary was built from real queries");
});

Deno.test("LongHeads retrieves a planted needle chunk far beyond the attention length", () => {
  // 8k tokens, attention length 512 (16×), chunks of 64; no RoPE so dense and LongHeads differ
  // only in what they read. The needle chunk's keys share the final query's direction.
  const T = 8192, H = 2, KV = 1, D = 16, w = 64, A = 512;
  const rng = new Rng(9);
  const x = stream(T, H, KV, D, 21);
  const qFinal = new Float32Array(H * D);
  rng.fillNormal(qFinal);
  const dir = new Float32Array(D);
  for (let i = 0; i < D; i++) dir[i] = qFinal[i]! + qFinal[D + i]!;
  const nrm = Math.hypot(...dir);
  const needleChunk = 37; // tokens 2368 … 2431
  for (let j = needleChunk * w; j < (needleChunk + 1) * w; j++) {
    for (let i = 0; i < D; i++) x.k.data[j * D + i]! += (10 * dir[i]!) / nrm;
  }
  x.q.data.set(qFinal, (T - 1) * H * D);
  const base = { layers: 1, heads: H, kvHeads: KV, headDim: D, record: true };
  const lh = new LongHeads({ chunkSize: w, attentionLength: A });
  const pipe = new AttentionPipeline({ ...base, selector: lh });
  const got = run(pipe, x, 1024);
  const read = pipe.lastRead!;
  for (let h = 0; h < H; h++) {
    assert.ok(read[h]!.includes(needleChunk * w), `head ${h} read the needle chunk`);
    assert.ok(read[h]!.length <= A);
  }
  // Output of the final query stays close to dense attention over all 8k tokens.
  const dense = run(new AttentionPipeline(base), x, 1024);
  const o = (T - 1) * H * D;
  const a = got.data.subarray(o, o + H * D), b = dense.data.subarray(o, o + H * D);
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! ** 2;
    nb += b[i]! ** 2;
  }
  const cosine = dot / Math.sqrt(na * nb);
  assert.ok(cosine > 0.9, `cosine to dense ${cosine}`);
});

Deno.test("LongHeads builds summaries from keys for chunks cached without queries", () => {
  const H = 2, KV = 1, D = 8, w = 8;
  const x = stream(100, H, KV, D, 3);
  const lh = new LongHeads({ chunkSize: w, attentionLength: 32 });
  const pipe = new AttentionPipeline({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: D,
    selector: lh,
  });
  pipe.append(0, sliceAxis(x.k, 0, 0, 99), sliceAxis(x.v, 0, 0, 99));
  const { out } = pipe.attend(
    0,
    sliceAxis(x.q, 0, 99, 100),
    sliceAxis(x.k, 0, 99, 100),
    sliceAxis(x.v, 0, 99, 100),
  );
  assert.ok(out.data.every(Number.isFinite));
  assert.equal(lh.fallbackSummaries, 12);
  assert.ok(lh.summary(0, 0, 0, 11) !== undefined);
  assert.equal(lh.summary(0, 0, 0, 12), undefined);
});

Deno.test("LongHeads offers the authors' prefill that excludes the query's own key", () => {
  const T = 80, H = 1, KV = 1, D = 4, w = 8;
  const x = stream(T, H, KV, D, 4);
  const lh = new LongHeads({ chunkSize: w, attentionLength: 32, excludeSelfInPrefill: true });
  const pipe = new AttentionPipeline({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: D,
    selector: lh,
  });
  pipe.attend(0, x.q, x.k, x.v);
  const last = pipe.lastSelection![0]!;
  assert.equal(last.spans[last.spans.length - 1], T - 1, "own key excluded");
  let n = 0;
  for (let i = 0; i < last.spans.length; i += 2) n += last.spans[i + 1]! - last.spans[i]!;
  assert.equal(last.queryAt, n, "query sits just after the last key");
});

Deno.test("LongHeads key-bound scores bound every token's distance-0 logit, for either key form", () => {
  const T = 300, H = 4, KV = 2, D = 8, w = 16, A = 64;
  const x = stream(T, H, KV, D, 31);
  const rope = new Rope({ headDim: D });
  for (const keyForm of ["post-rope", "pre-rope"] as const) {
    const lh = new LongHeads({ chunkSize: w, attentionLength: A, chunkScore: "key-bound" });
    const pipe = new AttentionPipeline({
      layers: 1,
      heads: H,
      kvHeads: KV,
      headDim: D,
      rope,
      keyForm,
      selector: lh,
    });
    run(pipe, x, 64);
    assert.equal(lh.summary(0, 0, 0, 0), undefined, "no summaries in key-bound mode");
    const q = x.q.data.subarray((T - 1) * H * D, (T - 1) * H * D + D); // head 0 → KV head 0
    for (let c = 0; c < Math.floor(T / w); c++) {
      const bound = lh.scoreChunk(0, 0, 0, c, q)!;
      let best = -Infinity;
      for (let j = c * w; j < (c + 1) * w; j++) {
        let dot = 0;
        for (let i = 0; i < D; i++) dot += q[i]! * x.k.data[(j * KV) * D + i]!;
        best = Math.max(best, dot);
      }
      assert.ok(bound >= best - 1e-4, `${keyForm} chunk ${c}: bound ${bound} < max logit ${best}`);
    }
    assert.equal(lh.scoreChunk(0, 0, 0, 1000, q), undefined);
    const b = lh.keyBound(0, 0, 3)!;
    for (let i = 0; i < D; i++) {
      let lo = Infinity, hi = -Infinity;
      for (let j = 3 * w; j < 4 * w; j++) {
        lo = Math.min(lo, x.k.data[j * KV * D + i]!);
        hi = Math.max(hi, x.k.data[j * KV * D + i]!);
      }
      assert.ok(
        Math.abs(b[i]! - lo) < 1e-5 && Math.abs(b[D + i]! - hi) < 1e-5,
        `${keyForm} dim ${i}`,
      );
    }
  }
});

Deno.test("LongHeads key-bound finds a single needle token that the chunk summary averages away", () => {
  // 8k tokens, attention length 512 (16×), chunks of 64, RoPE on: one key (not a chunk) matches
  // the final query's direction. Key-bound ranking must read it for every head.
  const T = 8192, H = 2, KV = 1, D = 16, w = 64, A = 512;
  const rng = new Rng(4);
  const x = stream(T, H, KV, D, 41);
  const qFinal = new Float32Array(H * D);
  rng.fillNormal(qFinal);
  const dir = new Float32Array(D);
  for (let i = 0; i < D; i++) dir[i] = qFinal[i]! + qFinal[D + i]!;
  const nrm = Math.hypot(...dir);
  const needle = 2400;
  for (let i = 0; i < D; i++) x.k.data[needle * D + i] = (12 * dir[i]!) / nrm;
  x.q.data.set(qFinal, (T - 1) * H * D);
  const base = {
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: D,
    rope: new Rope({ headDim: D }),
    record: true,
  };
  const reads = (chunkScore: "summary" | "key-bound"): boolean[] => {
    const pipe = new AttentionPipeline({
      ...base,
      selector: new LongHeads({ chunkSize: w, attentionLength: A, chunkScore }),
    });
    run(pipe, x, 1024);
    return pipe.lastRead!.map((r) => {
      assert.ok(r.length <= A);
      return r.includes(needle);
    });
  };
  assert.deepEqual(reads("key-bound"), [true, true], "key-bound: every head reads the needle");
  // The paper's summary averages the needle with its chunk's 63 random keys: no head finds it
  // here (this seed), the failure the pass-key trace in bench/results/ shows on a real model.
  assert.deepEqual(reads("summary"), [false, false]);
});

Deno.test("LongHeads rejects bad options", () => {
  assert.throws(() => new LongHeads({ chunkSize: 0 }), {
    name: "RangeError",
    message: /chunkSize must be a positive integer, got 0/,
  });
  assert.throws(() => new LongHeads({ chunkSize: 64, attentionLength: 100 }), {
    name: "RangeError",
    message: /attentionLength must be a multiple of chunkSize \(64\), got 100/,
  });
  assert.throws(() => new LongHeads({ chunkSize: 64, attentionLength: 128 }), {
    name: "RangeError",
    message: /at least 3/,
  });
  assert.throws(() => new LongHeads({ gqa: "both" as never }), {
    name: "TypeError",
    message: /gqa must be/,
  });
  assert.throws(() => new LongHeads({ chunkScore: "max" as never }), {
    name: "TypeError",
    message: /chunkScore must be "summary" or "key-bound", got "max"/,
  });
  void tensor;
});

Deno.test("LongHeads gives the same result for any prefill chunking, aligned or not", () => {
  // Chunk boundaries of the pipeline calls (37, 5, 1 tokens) never align with LongHeads chunks
  // of 16; the last LongHeads chunk stays partial (T = 333 = 20·16 + 13).
  const T = 333, H = 4, KV = 2, D = 8;
  const x = stream(T, H, KV, D, 11);
  const rope = new Rope({ headDim: D });
  const base = { layers: 1, heads: H, kvHeads: KV, headDim: D, rope };
  for (const gqa of ["query-head", "kv-head"] as const) {
    const make = () =>
      new AttentionPipeline({
        ...base,
        selector: new LongHeads({ chunkSize: 16, attentionLength: 64, gqa }),
      });
    const oneByOne = run(make(), x, 1);
    for (const chunk of [37, 5, T]) {
      assertClose(run(make(), x, chunk).data, oneByOne.data, {
        atol: 1e-6,
        label: `${gqa} ${chunk}`,
      });
    }
  }
});

Deno.test("LongHeads short contexts: shorter than a chunk, fewer candidates than k", () => {
  const H = 2, KV = 1, D = 8;
  const rope = new Rope({ headDim: D });
  const base = { layers: 1, heads: H, kvHeads: KV, headDim: D, rope };
  // selectiveThreshold 1: only the chunk arithmetic keeps these dense.
  for (const [T, w, A] of [[5, 16, 48], [70, 16, 128]] as const) {
    const x = stream(T, H, KV, D, T);
    const dense = run(new AttentionPipeline(base), x, 3);
    const lh = new LongHeads({ chunkSize: w, attentionLength: A, selectiveThreshold: 1 });
    const got = run(new AttentionPipeline({ ...base, selector: lh }), x, 3);
    assertClose(got.data, dense.data, { atol: 1e-5, label: `T=${T}` });
  }
});

Deno.test("AttentionPipeline.reset() resets LongHeads: a second sequence equals a fresh pipeline", () => {
  const H = 2, KV = 1, D = 8;
  const rope = new Rope({ headDim: D });
  const make = () =>
    new AttentionPipeline({
      layers: 1,
      heads: H,
      kvHeads: KV,
      headDim: D,
      rope,
      selector: new LongHeads({ chunkSize: 8, attentionLength: 32 }),
    });
  const a = stream(150, H, KV, D, 40), b = stream(150, H, KV, D, 50);
  const reused = make();
  run(reused, a, 17);
  reused.reset();
  assertClose(run(reused, b, 17).data, run(make(), b, 17).data, { atol: 0 });
});
