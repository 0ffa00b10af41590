// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import type { HeadSelection } from "../attention/selection.ts";
import { createAttendStats } from "../attention/sparse_attend.ts";
import { LongHeads } from "../attention/long_heads.ts";
import { AttentionPipeline } from "../attention/pipeline.ts";
import { Rope } from "../positional/rope.ts";
import { randn } from "../tensor/random.ts";
import { sliceAxis } from "../tensor/tensor.ts";
import type { Tensor } from "../tensor/types.ts";
import { assertClose, maxAbsDiff } from "../tests/_util.ts";
import { type GpuContext, tryRequestGpu } from "./device.ts";
import { GpuKvStore } from "./kv_store.ts";
import {
  longHeadsDecodeWebGpu,
  LongHeadsGpuSummaries,
  uploadLongHeadsSummaries,
} from "./long_heads.ts";
import type { WgslStorage } from "./_wgsl/common.ts";
import { groupSumWgsl } from "./_wgsl/long_heads.ts";
import { download, downloadState, releaseState, releaseTensor, upload } from "./tensor.ts";

const probe = await tryRequestGpu();
const gpu = probe.gpu;
if (gpu === undefined) {
  console.log(`gpu/long_heads_test.ts: skipping WebGPU parity tests: ${probe.reason}`);
}
const ignore = gpu === undefined;

interface Case {
  heads: number;
  kvHeads: number;
  headDim: number;
  chunkSize: number;
  attentionLength: number;
  gqa: "query-head" | "kv-head";
  keyForm: "post-rope" | "pre-rope";
  /** Prefill tokens before the decode steps. */
  context: number;
  /** Decode steps, each compared. */
  steps: number;
  /** Keep the summaries in a growing {@linkcode LongHeadsGpuSummaries} table instead of re-uploading. */
  incremental?: boolean;
  /** Upload the decode query as f16 (the CPU pipeline gets the same f16-rounded values). */
  f16Query?: boolean;
  /** Chunk ranking. @default {"summary"} */
  chunkScore?: "summary" | "key-bound";
}

/** Chunks wholly inside a selection's spans, other than 0, a − 1 and a. */
function chosenChunks(hs: HeadSelection, w: number, a: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < hs.spans.length; i += 2) {
    for (let c = Math.ceil(hs.spans[i]! / w); (c + 1) * w <= hs.spans[i + 1]!; c++) {
      if (c !== 0 && c !== a - 1 && c !== a) out.push(c);
    }
  }
  return out;
}

/**
 * Prefills the CPU pipeline, then decodes `steps` tokens on both the CPU
 * pipeline and the GPU path (summaries from the CPU reference) and compares
 * chosen chunks exactly and `out`/`lse` within `atol 2e-5 + rtol 1e-4`.
 * Returns the largest |Δ out| and the number of steps that ran selectively.
 */
async function parity(g: GpuContext, c: Case): Promise<{ err: number; selective: number }> {
  const { heads: H, kvHeads: KV, headDim: d, chunkSize: w } = c;
  const total = c.context + c.steps;
  const rope = new Rope({ headDim: d });
  const lh = new LongHeads({
    chunkSize: w,
    attentionLength: c.attentionLength,
    gqa: c.gqa,
    chunkScore: c.chunkScore ?? "summary",
  });
  const pipe = new AttentionPipeline({
    layers: 1,
    heads: H,
    kvHeads: KV,
    headDim: d,
    rope,
    selector: lh,
    keyForm: c.keyForm,
  });
  const query = randn([total, H, d], { seed: 31 });
  if (c.f16Query) query.data.forEach((x, i) => query.data[i] = Math.f16round(x));
  const key = randn([total, KV, d], { seed: 32 });
  const value = randn([total, KV, d], { seed: 33 });
  const store = new GpuKvStore(g, {
    layers: 1,
    kvHeads: KV,
    headDim: d,
    capacity: total + 8,
    pageSize: 16,
    keyForm: c.keyForm,
    dtype: "f32",
  });
  const stored = (x: typeof key, from: number, to: number): Tensor =>
    c.keyForm === "post-rope"
      ? rope.apply(sliceAxis(x, 0, from, to), from)
      : sliceAxis(x, 0, from, to);
  pipe.attend(
    0,
    sliceAxis(query, 0, 0, c.context),
    sliceAxis(key, 0, 0, c.context),
    sliceAxis(value, 0, 0, c.context),
  );
  store.append(0, stored(key, 0, c.context), sliceAxis(value, 0, 0, c.context), 0);
  let err = 0, selective = 0;
  const table = c.incremental
    ? new LongHeadsGpuSummaries(g, {
      kvHeads: KV,
      group: H / KV,
      headDim: d,
      gqa: c.gqa,
      chunkScore: lh.chunkScore,
      initialChunks: 4,
    })
    : undefined;
  try {
    for (let t = c.context; t < total; t++) {
      const q = sliceAxis(query, 0, t, t + 1);
      const ref = pipe.attend(0, q, sliceAxis(key, 0, t, t + 1), sliceAxis(value, 0, t, t + 1));
      const refSel = pipe.lastSelection!;
      store.append(0, stored(key, t, t + 1), sliceAxis(value, 0, t, t + 1), t);
      const n = t + 1;
      const summaries = table !== undefined
        ? table.sync(lh, 0, Math.floor(n / w))
        : uploadLongHeadsSummaries(g, lh, 0, KV, H / KV, Math.floor(n / w), d);
      const gq = upload(g, q, c.f16Query ? { dtype: "f16" } : {});
      const stats = createAttendStats(H);
      const step = await longHeadsDecodeWebGpu(g, lh, gq, store.view(0), summaries, {
        queryPosition: t,
        rope,
        stats,
      });
      const got = await downloadState(g, step);
      releaseState(g, step);
      if (table === undefined) releaseTensor(g, summaries);
      releaseTensor(g, gq);
      // Same windows (spans, positions) and same chosen chunks, exactly.
      const a = Math.floor(t / w);
      for (let h = 0; h < H; h++) {
        const want = refSel[h]!, have = step.selection[h]!;
        assert.deepEqual(
          Array.from(have.spans),
          Array.from(want.spans),
          `step ${t} head ${h} spans`,
        );
        assert.deepEqual(
          have.seenAt === undefined ? undefined : Array.from(have.seenAt),
          want.seenAt === undefined ? undefined : Array.from(want.seenAt),
          `step ${t} head ${h} seenAt`,
        );
        assert.equal(have.queryAt, want.queryAt, `step ${t} head ${h} queryAt`);
        if (step.take > 0) {
          const row = c.gqa === "query-head" ? h : Math.floor(h / (H / KV));
          const chosen = Array.from(step.chosen.subarray(row * step.take, (row + 1) * step.take));
          assert.deepEqual(chosen, chosenChunks(want, w, a), `step ${t} head ${h} chosen`);
        }
      }
      if (step.take > 0) selective++;
      assert.deepEqual(stats.tokensPerHead, pipe.lastStats!.tokensPerHead);
      const label = `${lh.chunkScore} ${c.gqa} ${H}/${KV} d${d} step ${t}`;
      assertClose(got.out.data, ref.out.data, { atol: 2e-5, rtol: 1e-4, label: `${label} out` });
      assertClose(got.lse.data, ref.lse.data, { atol: 2e-5, rtol: 1e-4, label: `${label} lse` });
      err = Math.max(err, maxAbsDiff(got.out.data, ref.out.data));
    }
    await g.checkErrors();
  } finally {
    table?.destroy();
    store.destroy();
  }
  return { err, selective };
}

const cases: (Case & { name: string; wantSelective: number })[] = [
  {
    name: "query-head, GQA 4/2, d 8, w 6, post-RoPE, a step closes a chunk",
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    chunkSize: 6,
    attentionLength: 30,
    gqa: "query-head",
    keyForm: "post-rope",
    context: 203,
    steps: 3,
    incremental: true,
    wantSelective: 3,
  },
  {
    name: "kv-head, GQA 4/2, d 32, w 5, pre-RoPE",
    heads: 4,
    kvHeads: 2,
    headDim: 32,
    chunkSize: 5,
    attentionLength: 40,
    gqa: "kv-head",
    keyForm: "pre-rope",
    context: 151,
    steps: 2,
    incremental: true,
    wantSelective: 2,
  },
  {
    name: "query-head, GQA 2/1, d 32, w 7, pre-RoPE",
    heads: 2,
    kvHeads: 1,
    headDim: 32,
    chunkSize: 7,
    attentionLength: 28,
    gqa: "query-head",
    keyForm: "pre-rope",
    context: 130,
    steps: 2,
    wantSelective: 2,
  },
  {
    name: "kv-head, GQA 2/1, d 8, w 4, post-RoPE, f16 query",
    heads: 2,
    kvHeads: 1,
    headDim: 8,
    chunkSize: 4,
    attentionLength: 24,
    gqa: "kv-head",
    keyForm: "post-rope",
    context: 97,
    steps: 2,
    f16Query: true,
    wantSelective: 2,
  },
  {
    name: "k = 3 (no candidates taken), GQA 4/2, d 8",
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    chunkSize: 6,
    attentionLength: 18,
    gqa: "query-head",
    keyForm: "post-rope",
    context: 61,
    steps: 1,
    wantSelective: 0,
  },
  {
    name:
      "key-bound, query-head, GQA 4/2, d 8, w 6, post-RoPE, a step closes a chunk, growing table",
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    chunkSize: 6,
    attentionLength: 30,
    gqa: "query-head",
    keyForm: "post-rope",
    context: 203,
    steps: 3,
    incremental: true,
    chunkScore: "key-bound",
    wantSelective: 3,
  },
  {
    name: "key-bound, kv-head, GQA 6/2, d 32, w 5, pre-RoPE, growing table",
    heads: 6,
    kvHeads: 2,
    headDim: 32,
    chunkSize: 5,
    attentionLength: 40,
    gqa: "kv-head",
    keyForm: "pre-rope",
    context: 151,
    steps: 2,
    incremental: true,
    chunkScore: "key-bound",
    wantSelective: 2,
  },
  {
    name: "key-bound, query-head, GQA 3/1, d 32, w 7, pre-RoPE",
    heads: 3,
    kvHeads: 1,
    headDim: 32,
    chunkSize: 7,
    attentionLength: 28,
    gqa: "query-head",
    keyForm: "pre-rope",
    context: 130,
    steps: 2,
    chunkScore: "key-bound",
    wantSelective: 2,
  },
  {
    name: "key-bound, kv-head, GQA 2/1, d 8, w 4, post-RoPE, f16 query",
    heads: 2,
    kvHeads: 1,
    headDim: 8,
    chunkSize: 4,
    attentionLength: 24,
    gqa: "kv-head",
    keyForm: "post-rope",
    context: 97,
    steps: 2,
    f16Query: true,
    chunkScore: "key-bound",
    wantSelective: 2,
  },
  {
    name: "key-bound, k = 3 (no candidates taken), GQA 4/2, d 8",
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    chunkSize: 6,
    attentionLength: 18,
    gqa: "kv-head",
    keyForm: "pre-rope",
    context: 61,
    steps: 1,
    chunkScore: "key-bound",
    wantSelective: 0,
  },
  {
    name: "key-bound dense oracle: context within the attention length, GQA 4/2, d 8",
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    chunkSize: 6,
    attentionLength: 30,
    gqa: "query-head",
    keyForm: "post-rope",
    context: 27,
    steps: 2,
    chunkScore: "key-bound",
    wantSelective: 0,
  },
  {
    name: "dense oracle: context within the attention length, GQA 4/2, d 8",
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    chunkSize: 6,
    attentionLength: 30,
    gqa: "kv-head",
    keyForm: "pre-rope",
    context: 27,
    steps: 2,
    wantSelective: 0,
  },
];

for (const c of cases) {
  Deno.test({
    name: `longHeadsDecodeWebGpu() equals the CPU LongHeads pipeline (${c.name})`,
    ignore,
    fn: async () => {
      const { err, selective } = await parity(gpu!, c);
      assert.equal(selective, c.wantSelective);
      console.log(`  max |Δ out| = ${err.toExponential(2)}`);
    },
  });
}

Deno.test({
  name: "the group-sum WGSL compiles for every query storage",
  ignore,
  fn: async () => {
    const storages: WgslStorage[] = gpu?.features.shaderF16
      ? ["f32", "f16", "f16-packed"]
      : ["f32", "f16-packed"];
    for (const query of storages) {
      const c = { workgroupSize: 64, query };
      const messages = await gpu!.compileMessages("long-heads-group-sum", c, groupSumWgsl);
      const errors = messages.filter((m) => m.type === "error");
      assert.equal(errors.length, 0, `${query}: ${errors[0]?.message}`);
    }
  },
});

Deno.test({
  name: "longHeadsDecodeWebGpu() rejects mis-shaped inputs",
  ignore,
  fn: async () => {
    const g = gpu!;
    const lh = new LongHeads({ chunkSize: 4, attentionLength: 16 });
    const store = new GpuKvStore(g, {
      layers: 1,
      kvHeads: 1,
      headDim: 8,
      capacity: 64,
      dtype: "f32",
    });
    store.append(0, randn([40, 1, 8], { seed: 1 }), randn([40, 1, 8], { seed: 2 }));
    const q2 = upload(g, randn([2, 2, 8], { seed: 3 }));
    const q1 = upload(g, randn([1, 2, 8], { seed: 4 }));
    const few = upload(g, randn([3, 2, 8], { seed: 5 })); // needs a − 1 = 8 chunks
    const wrongRows = upload(g, randn([9, 1, 8], { seed: 6 }));
    const bounds = upload(g, randn([2, 9, 1, 8], { seed: 7 }));
    try {
      await assert.rejects(
        longHeadsDecodeWebGpu(g, lh, q2, store.view(0), few, { queryPosition: 39 }),
        /one decode token/,
      );
      await assert.rejects(
        longHeadsDecodeWebGpu(g, lh, q1, store.view(0), few, { queryPosition: 39 }),
        /summaries must cover chunks 0 … 7 \(8 chunks\), got 3/,
      );
      await assert.rejects(
        longHeadsDecodeWebGpu(g, lh, q1, store.view(0), wrongRows, { queryPosition: 39 }),
        /summaries must have shape \[chunks, 2, 8\]/,
      );
      await assert.rejects(
        longHeadsDecodeWebGpu(
          g,
          { ...lh, chunks: 2, chunkSize: 4, selectiveThreshold: 8, gqa: "query-head" },
          q1,
          store.view(0),
          few,
          {
            queryPosition: 39,
          },
        ),
        /config.chunks must be at least 3, got 2/,
      );
      assert.throws(
        () => uploadLongHeadsSummaries(g, lh, 0, 1, 2, 3, 8),
        /chunk 0 of layer 0, KV head 0, row 0 has no summary yet/,
      );
      // Key-bound mode: the table must be [2, chunks, kvHeads, headDim] (min, max).
      const kb = new LongHeads({ chunkSize: 4, attentionLength: 16, chunkScore: "key-bound" });
      await assert.rejects(
        longHeadsDecodeWebGpu(g, kb, q1, store.view(0), wrongRows, { queryPosition: 39 }),
        /summaries must be key bounds of shape \[2, chunks, 1, 8\] \(min, then max; each half contiguous\) in "key-bound" mode, got shape \[9, 1, 8\] with strides \[8, 8, 1\]/,
      );
      await assert.rejects(
        longHeadsDecodeWebGpu(g, kb, q1, store.view(0), { ...bounds, shape: [2, 3, 1, 8] }, {
          queryPosition: 39,
        }),
        /summaries must cover chunks 0 … 7 \(8 chunks\), got 3/,
      );
      await assert.rejects(
        longHeadsDecodeWebGpu(g, lh, q1, store.view(0), bounds, { queryPosition: 39 }),
        /summaries must have shape \[tokens, heads, headDim\]/,
      );
      await assert.rejects(
        longHeadsDecodeWebGpu(
          g,
          { ...lh, chunkScore: "best" as "summary", chunkSize: 4, chunks: 4, gqa: "query-head" },
          q1,
          store.view(0),
          bounds,
          { queryPosition: 39 },
        ),
        /config.chunkScore must be "summary" or "key-bound", got "best"/,
      );
      assert.throws(
        () => uploadLongHeadsSummaries(g, kb, 0, 1, 2, 3, 8),
        /chunk 0 of layer 0, KV head 0 has no key bound yet/,
      );
      assert.throws(
        () =>
          uploadLongHeadsSummaries(
            g,
            { gqa: "query-head", chunkScore: "key-bound", summary: () => undefined },
            0,
            1,
            2,
            3,
            8,
          ),
        /source.keyBound must be a function in "key-bound" mode, got undefined/,
      );
      const table = new LongHeadsGpuSummaries(g, {
        kvHeads: 1,
        group: 2,
        headDim: 8,
        gqa: "query-head",
        chunkScore: "key-bound",
      });
      assert.throws(
        () => table.sync(lh, 0, 3),
        /source.chunkScore must be the table's \("key-bound"\), got "summary"/,
      );
      table.destroy();
      assert.throws(
        () =>
          new LongHeadsGpuSummaries(g, {
            kvHeads: 1,
            group: 2,
            headDim: 8,
            gqa: "query-head",
            chunkScore: "max" as "summary",
          }),
        /chunkScore must be one of "summary", "key-bound", got "max"/,
      );
    } finally {
      for (const t of [q2, q1, few, wrongRows, bounds]) releaseTensor(g, t);
      store.destroy();
    }
  },
});

Deno.test({
  name: "LongHeadsGpuSummaries grows and matches the CPU summaries exactly",
  ignore,
  fn: async () => {
    const g = gpu!;
    const d = 8, w = 4;
    for (const gqa of ["query-head", "kv-head"] as const) {
      const lh = new LongHeads({ chunkSize: w, attentionLength: 16, gqa });
      const pipe = new AttentionPipeline({
        layers: 1,
        heads: 4,
        kvHeads: 2,
        headDim: d,
        rope: new Rope({ headDim: d }),
        selector: lh,
      });
      const table = new LongHeadsGpuSummaries(g, {
        kvHeads: 2,
        group: 2,
        headDim: d,
        gqa,
        initialChunks: 1,
      });
      const rows = gqa === "query-head" ? 4 : 2;
      try {
        for (const [t0, t1] of [[0, 9], [9, 30], [30, 47]] as const) {
          pipe.attend(
            0,
            randn([t1 - t0, 4, d], { seed: t0 + 1 }),
            randn([t1 - t0, 2, d], { seed: t0 + 2 }),
            randn([t1 - t0, 2, d], { seed: t0 + 3 }),
          );
          const chunks = Math.floor(t1 / w);
          const view = table.sync(lh, 0, chunks);
          assert.deepEqual(view.shape, [chunks, rows, d]);
          assert.equal(table.chunks, chunks);
          const got = (await download(g, view)).data as Float32Array;
          const oneShot = uploadLongHeadsSummaries(g, lh, 0, 2, 2, chunks, d);
          const again = (await download(g, oneShot)).data as Float32Array;
          releaseTensor(g, oneShot);
          const want = new Float32Array(chunks * rows * d);
          for (let c = 0; c < chunks; c++) {
            for (let r = 0; r < rows; r++) {
              const kh = gqa === "query-head" ? r >> 1 : r, row = gqa === "query-head" ? r & 1 : 0;
              want.set(lh.summary(0, kh, row, c)!, (c * rows + r) * d);
            }
          }
          assert.deepEqual(got, want, `${gqa} table after ${t1} tokens`);
          assert.deepEqual(again, want, `${gqa} one-shot upload after ${t1} tokens`);
        }
        assert.throws(() => table.sync(lh, 0, 3), /must not shrink below the 11 held/);
        table.reset();
        assert.equal(table.chunks, 0);
      } finally {
        table.destroy();
      }
    }
    await g.checkErrors();
  },
});

Deno.test({
  name: "LongHeadsGpuSummaries in key-bound mode grows and matches LongHeads.keyBound exactly",
  ignore,
  fn: async () => {
    const g = gpu!;
    const d = 8, w = 4, KV = 2;
    for (const [gqa, keyForm] of [["query-head", "post-rope"], ["kv-head", "pre-rope"]] as const) {
      const lh = new LongHeads({ chunkSize: w, attentionLength: 16, gqa, chunkScore: "key-bound" });
      const pipe = new AttentionPipeline({
        layers: 1,
        heads: 6,
        kvHeads: KV,
        headDim: d,
        rope: new Rope({ headDim: d }),
        selector: lh,
        keyForm,
      });
      const table = new LongHeadsGpuSummaries(g, {
        kvHeads: KV,
        group: 3,
        headDim: d,
        gqa,
        chunkScore: "key-bound",
        initialChunks: 1,
      });
      assert.equal(table.rows, KV);
      try {
        for (const [t0, t1] of [[0, 9], [9, 30], [30, 47]] as const) {
          pipe.attend(
            0,
            randn([t1 - t0, 6, d], { seed: t0 + 1 }),
            randn([t1 - t0, KV, d], { seed: t0 + 2 }),
            randn([t1 - t0, KV, d], { seed: t0 + 3 }),
          );
          const chunks = Math.floor(t1 / w);
          const view = table.sync(lh, 0, chunks);
          assert.deepEqual(view.shape, [2, chunks, KV, d]);
          assert.equal(table.chunks, chunks);
          const half = (i: number) => ({
            ...view,
            shape: view.shape.slice(1),
            strides: view.strides.slice(1),
            offset: view.offset + i * view.strides[0]!,
          });
          const lo = (await download(g, half(0))).data as Float32Array;
          const hi = (await download(g, half(1))).data as Float32Array;
          const oneShot = uploadLongHeadsSummaries(g, lh, 0, KV, 3, chunks, d);
          assert.deepEqual(oneShot.shape, [2, chunks, KV, d]);
          const again = (await download(g, oneShot)).data as Float32Array;
          releaseTensor(g, oneShot);
          const want = new Float32Array(2 * chunks * KV * d);
          for (let c = 0; c < chunks; c++) {
            for (let kh = 0; kh < KV; kh++) {
              const b = lh.keyBound(0, kh, c)!;
              want.set(b.subarray(0, d), (c * KV + kh) * d);
              want.set(b.subarray(d), ((chunks + c) * KV + kh) * d);
            }
          }
          const label = `${gqa} ${keyForm} after ${t1} tokens`;
          assert.deepEqual(lo, want.subarray(0, chunks * KV * d), `${label}: min half`);
          assert.deepEqual(hi, want.subarray(chunks * KV * d), `${label}: max half`);
          assert.deepEqual(again, want, `${label}: one-shot upload`);
        }
        table.reset();
        assert.equal(table.chunks, 0);
      } finally {
        table.destroy();
      }
    }
    await g.checkErrors();
  },
});

Deno.test({
  name: "key-bound decode on the GPU retrieves the chunk of a planted key far outside the window",
  ignore,
  fn: async () => {
    const g = gpu!;
    const d = 8, w = 4, n = 81, needle = 30; // the needle in chunk 7 of a = 20
    const rope = new Rope({ headDim: d });
    const q = randn([n, 2, d], { seed: 41 });
    const k = randn([n, 1, d], { seed: 42 });
    const v = randn([n, 1, d], { seed: 43 });
    // Both query heads of the decode token share one direction; the needle key (raw) points along it.
    let norm = 0;
    for (let x = 0; x < d; x++) norm += q.data[((n - 1) * 2) * d + x]! ** 2;
    for (let x = 0; x < d; x++) {
      const qx = q.data[((n - 1) * 2) * d + x]!;
      q.data[((n - 1) * 2 + 1) * d + x] = qx;
      k.data[needle * d + x] = 4 * Math.sqrt(d) * qx / Math.sqrt(norm);
    }
    const lh = new LongHeads({ chunkSize: w, attentionLength: 16, chunkScore: "key-bound" });
    const pipe = new AttentionPipeline({
      layers: 1,
      heads: 2,
      kvHeads: 1,
      headDim: d,
      rope,
      selector: lh,
      keyForm: "pre-rope",
    });
    const store = new GpuKvStore(g, {
      layers: 1,
      kvHeads: 1,
      headDim: d,
      capacity: 96,
      dtype: "f32",
    });
    store.append(0, k, v);
    pipe.attend(0, sliceAxis(q, 0, 0, n - 1), sliceAxis(k, 0, 0, n - 1), sliceAxis(v, 0, 0, n - 1));
    const ref = pipe.attend(
      0,
      sliceAxis(q, 0, n - 1, n),
      sliceAxis(k, 0, n - 1, n),
      sliceAxis(v, 0, n - 1, n),
    );
    const bounds = uploadLongHeadsSummaries(g, lh, 0, 1, 2, Math.floor(n / w), d);
    const gq = upload(g, sliceAxis(q, 0, n - 1, n));
    try {
      const step = await longHeadsDecodeWebGpu(g, lh, gq, store.view(0), bounds, {
        queryPosition: n - 1,
        rope,
      });
      assert.equal(step.take, 1);
      assert.deepEqual(Array.from(step.chosen), [7, 7]); // both heads pick the needle's chunk
      const got = await downloadState(g, step);
      releaseState(g, step);
      assertClose(got.out.data, ref.out.data, { atol: 2e-5, rtol: 1e-4, label: "needle out" });
      assertClose(got.lse.data, ref.lse.data, { atol: 2e-5, rtol: 1e-4, label: "needle lse" });
    } finally {
      releaseTensor(g, bounds);
      releaseTensor(g, gq);
      store.destroy();
    }
    await g.checkErrors();
  },
});
