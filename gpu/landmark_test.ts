// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import {
  type LandmarkAggregate,
  landmarkAttend,
  type LandmarkGqa,
  landmarkGroupedAttention,
  type LandmarkHeadSelection,
  LandmarkRetrieval,
} from "../attention/landmark.ts";
import { createAttendStats } from "../attention/sparse_attend.ts";
import { KvStore } from "../kv/kv_store.ts";
import { Rope } from "../positional/rope.ts";
import { randn } from "../tensor/random.ts";
import { sliceAxis } from "../tensor/tensor.ts";
import type { Tensor } from "../tensor/types.ts";
import { assertClose, maxAbsDiff } from "../tests/_util.ts";
import { type GpuContext, tryRequestGpu } from "./device.ts";
import { GpuKvStore } from "./kv_store.ts";
import { landmarkDecodeWebGpu } from "./landmark.ts";
import { download, downloadState, releaseState, releaseTensor, upload } from "./tensor.ts";

const probe = await tryRequestGpu();
const gpu = probe.gpu;
if (gpu === undefined) {
  console.log(`gpu/landmark_test.ts: skipping WebGPU parity tests: ${probe.reason}`);
}
const ignore = gpu === undefined;

/** Tolerance of every GPU-vs-CPU comparison: |Δ| ≤ atol + rtol·|want|. */
const TOL = { atol: 2e-5, rtol: 1e-4 };

interface Case {
  name: string;
  heads: number;
  kvHeads: number;
  headDim: number;
  blockSize: number;
  topK: number;
  aggregate: LandmarkAggregate;
  gqa: LandmarkGqa;
  /** `"none"`: no RoPE; else RoPE with keys stored rotated (post) or raw (pre). */
  keyForm: "post-rope" | "pre-rope" | "none";
  /** Tokens cached before the first step. */
  context: number;
  /** Steps, each compared. */
  steps: number;
  /** Query tokens per step (a decode chunk). @default {1} */
  chunk?: number;
  /** Most bytes per store segment (forces blocks across segment buffers). */
  maxSegmentBytes?: number;
  /** Positions jump by this much from cache index `gapAt` on (post-RoPE keys rotated on read). */
  gap?: { at: number; by: number };
  /** KV storage dtype of both stores (the query is uploaded as f16 too). @default {"f32"} */
  dtype?: "f32" | "f16";
  /** Also compare with `landmarkGroupedAttention` over the whole context (needs k ≥ blocks, no gap). */
  oracle?: boolean;
}

/**
 * Appends the context, then runs `steps` chunks on the CPU reference
 * (`LandmarkRetrieval.selectChunk` + `landmarkAttend` over a `KvStore`) and
 * on the GPU path over a `GpuKvStore` holding the same keys; compares the
 * retrieved blocks exactly, `out`/`lse` within {@linkcode TOL}, and the
 * stats. Returns the largest |Δ out| and the steps that retrieved blocks.
 */
async function parity(g: GpuContext, c: Case): Promise<{ err: number; retrieved: number }> {
  const { heads: H, kvHeads: KV, headDim: d, blockSize: bs } = c;
  const bl = bs + 1, group = H / KV;
  const chunk = c.chunk ?? 1;
  const total = c.context + c.steps * chunk;
  const rope = c.keyForm === "none" ? undefined : new Rope({ headDim: d });
  const keyForm = c.keyForm === "pre-rope" ? "pre-rope" : "post-rope";
  const posOf = (i: number): number => i + (c.gap !== undefined && i >= c.gap.at ? c.gap.by : 0);
  const positions = Array.from({ length: total }, (_, i) => posOf(i));
  const query = randn([total, H, d], { seed: 41 });
  const key = randn([total, KV, d], { seed: 42 });
  const value = randn([total, KV, d], { seed: 43 });
  const dtype = c.dtype ?? "f32";
  if (dtype === "f16") query.data.forEach((x, i) => query.data[i] = Math.f16round(x));
  const cpu = new KvStore({ layers: 1, kvHeads: KV, headDim: d, keyForm, pageSize: 16, dtype });
  const store = new GpuKvStore(g, {
    layers: 1,
    kvHeads: KV,
    headDim: d,
    capacity: total + 8,
    pageSize: 16,
    keyForm,
    dtype,
    ...(c.maxSegmentBytes !== undefined ? { maxSegmentBytes: c.maxSegmentBytes } : {}),
  });
  if (c.maxSegmentBytes !== undefined) assert.ok(store.view(0).segments.length > 2);
  const append = (from: number, to: number): void => {
    const pos = positions.slice(from, to);
    const k = sliceAxis(key, 0, from, to);
    const stored: Tensor = rope !== undefined && keyForm === "post-rope" ? rope.apply(k, pos) : k;
    const v = sliceAxis(value, 0, from, to);
    cpu.append(0, stored, v, pos);
    store.append(0, stored, v, pos);
  };
  const retrieval = new LandmarkRetrieval({
    blockSize: bs,
    topK: c.topK,
    aggregate: c.aggregate,
    gqa: c.gqa,
  });
  let err = 0, retrieved = 0;
  try {
    append(0, c.context);
    for (let n = c.context; n < total; n += chunk) {
      append(n, n + chunk);
      const q = sliceAxis(query, 0, n, n + chunk);
      const qpos = positions.slice(n, n + chunk);
      const sels = retrieval.selectChunk({
        store: cpu,
        layer: 0,
        query: q,
        start: n,
        queryPositions: qpos,
        ...(rope !== undefined ? { rope } : {}),
      });
      const refStats = createAttendStats(H);
      const ref = landmarkAttend(q, cpu, sels, {
        layer: 0,
        queryPositions: qpos,
        ...(rope !== undefined ? { rope } : {}),
        stats: refStats,
      });
      const gq = upload(g, q, { dtype });
      const stats = createAttendStats(H);
      const step = landmarkDecodeWebGpu(g, retrieval, gq, store.view(0), {
        queryPosition: qpos[0]!,
        ...(rope !== undefined ? { rope } : {}),
        stats,
      });
      const got = await downloadState(g, step);
      const blocks = step.blocks === undefined
        ? new Int32Array(0)
        : (await download(g, step.blocks)).data as Int32Array;
      releaseState(g, step);
      if (step.blocks !== undefined) releaseTensor(g, step.blocks);
      releaseTensor(g, gq);
      const label = `${c.name}, tokens ${n}…${n + chunk - 1}`;
      // Same memory, same k, same blocks per token and head (exact ints).
      const nb = Math.floor(n / bl);
      assert.equal(step.memoryBlocks, nb, `${label} memoryBlocks`);
      assert.equal(step.k, Math.min(c.topK, nb), `${label} k`);
      if (step.k > 0) retrieved++;
      for (let t = 0; t < chunk; t++) {
        for (let h = 0; h < H; h++) {
          const sel = sels[t]![h] as LandmarkHeadSelection;
          const want = Array.from(sel.gates.subarray(0, step.k), (x) => (x - bs) / bl);
          const set = (c.aggregate === "max-over-tokens" ? 0 : t) * step.sets +
            (step.sets === 1 ? 0 : step.sets === H ? h : Math.floor(h / group));
          const have = Array.from(blocks.subarray(set * step.k, (set + 1) * step.k));
          assert.deepEqual(have, want, `${label}: token ${t} head ${h} blocks`);
        }
      }
      assertClose(got.out.data, ref.out.data, { ...TOL, label: `${label} out` });
      assertClose(got.lse.data, ref.lse.data, { ...TOL, label: `${label} lse` });
      assert.deepEqual(stats, refStats, `${label} stats`);
      err = Math.max(err, maxAbsDiff(got.out.data, ref.out.data));
      if (c.oracle) {
        // k ≥ blocks: the grouped softmax over the whole context (post-RoPE inputs).
        const all = sliceAxis(key, 0, 0, n + chunk);
        const input = {
          query: rope !== undefined ? rope.apply(q, qpos) : q,
          key: rope !== undefined ? rope.apply(all, positions.slice(0, n + chunk)) : all,
          value: sliceAxis(value, 0, 0, n + chunk),
        };
        const want = landmarkGroupedAttention(input, { blockSize: bs, queryOffset: n });
        assertClose(got.out.data, want.out.data, { ...TOL, label: `${label} oracle out` });
        assertClose(got.lse.data, want.lse.data, { ...TOL, label: `${label} oracle lse` });
      }
    }
    await g.checkErrors();
  } finally {
    store.destroy();
  }
  return { err, retrieved };
}

const cases: (Case & { wantRetrieved: number })[] = [
  {
    name: "MHA 2/2, d 8, per-token-and-head, post-RoPE, k < blocks, last block partial",
    heads: 2,
    kvHeads: 2,
    headDim: 8,
    blockSize: 5,
    topK: 3,
    aggregate: "per-token-and-head",
    gqa: "kv-head",
    keyForm: "post-rope",
    context: 47,
    steps: 3,
    wantRetrieved: 3,
  },
  {
    name: "GQA 4/2, d 32, per-token-and-head, query-head, pre-RoPE, k < blocks",
    heads: 4,
    kvHeads: 2,
    headDim: 32,
    blockSize: 6,
    topK: 2,
    aggregate: "per-token-and-head",
    gqa: "query-head",
    keyForm: "pre-rope",
    context: 61,
    steps: 2,
    wantRetrieved: 2,
  },
  {
    name: "GQA 4/2, d 32, kv-head (max of group softmax), post-RoPE, blocks across 4 segments",
    heads: 4,
    kvHeads: 2,
    headDim: 32,
    blockSize: 6,
    topK: 3,
    aggregate: "per-token-and-head",
    gqa: "kv-head",
    keyForm: "post-rope",
    context: 75,
    steps: 2,
    // Two pages of 16 tokens per segment: blocks of 7 cross segment buffers.
    maxSegmentBytes: 2 * 16 * 2 * 32 * 4,
    wantRetrieved: 2,
  },
  {
    name: "GQA 4/2, d 8, max-over-heads, no RoPE, k < blocks",
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    blockSize: 4,
    topK: 4,
    aggregate: "max-over-heads",
    gqa: "kv-head",
    keyForm: "none",
    context: 53,
    steps: 2,
    wantRetrieved: 2,
  },
  {
    name: "GQA 4/2, d 8, max-over-tokens, query-head, post-RoPE, chunks of 3 crossing blocks",
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    blockSize: 3,
    topK: 2,
    aggregate: "max-over-tokens",
    gqa: "query-head",
    keyForm: "post-rope",
    context: 38,
    steps: 3,
    chunk: 3,
    wantRetrieved: 3,
  },
  {
    name: "GQA 4/2, d 32, k ≥ blocks = grouped softmax over the whole context, post-RoPE",
    heads: 4,
    kvHeads: 2,
    headDim: 32,
    blockSize: 5,
    topK: 64,
    aggregate: "per-token-and-head",
    gqa: "kv-head",
    keyForm: "post-rope",
    context: 40,
    steps: 2,
    chunk: 2,
    oracle: true,
    wantRetrieved: 2,
  },
  {
    name: "MHA 3/3, d 8, k ≥ blocks, pre-RoPE, first steps have no complete block",
    heads: 3,
    kvHeads: 3,
    headDim: 8,
    blockSize: 4,
    topK: 8,
    aggregate: "max-over-heads",
    gqa: "kv-head",
    keyForm: "pre-rope",
    context: 2,
    steps: 5,
    chunk: 2,
    oracle: true,
    wantRetrieved: 3,
  },
  {
    name: "GQA 4/2, d 8, post-RoPE keys with a position gap (rotated on read)",
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    blockSize: 5,
    topK: 2,
    aggregate: "per-token-and-head",
    gqa: "kv-head",
    keyForm: "post-rope",
    context: 50,
    steps: 2,
    gap: { at: 20, by: 7 },
    wantRetrieved: 2,
  },
  {
    name: "GQA 20/1, d 8, kv-head, post-RoPE: query rows split across workgroups",
    heads: 20,
    kvHeads: 1,
    headDim: 8,
    blockSize: 5,
    topK: 2,
    aggregate: "per-token-and-head",
    gqa: "kv-head",
    keyForm: "post-rope",
    context: 33,
    steps: 1,
    wantRetrieved: 1,
  },
  {
    name: "GQA 4/2, d 32, f16 KV and query, kv-head, post-RoPE",
    heads: 4,
    kvHeads: 2,
    headDim: 32,
    blockSize: 7,
    topK: 3,
    aggregate: "per-token-and-head",
    gqa: "kv-head",
    keyForm: "post-rope",
    context: 70,
    steps: 2,
    dtype: "f16",
    wantRetrieved: 2,
  },
];

for (const c of cases) {
  Deno.test({
    name: `landmarkDecodeWebGpu() equals selectChunk + landmarkAttend: ${c.name}`,
    ignore,
    async fn() {
      const { err, retrieved } = await parity(gpu!, c);
      assert.equal(retrieved, c.wantRetrieved);
      console.log(`  max |Δ out| ${err.toExponential(2)}`);
    },
  });
}

Deno.test({
  name: "landmarkDecodeWebGpu() validates its arguments",
  ignore,
  async fn() {
    const g = gpu!;
    const store = new GpuKvStore(g, {
      layers: 1,
      kvHeads: 2,
      headDim: 8,
      capacity: 64,
      pageSize: 16,
      dtype: "f32",
    });
    store.append(0, randn([20, 2, 8], { seed: 1 }), randn([20, 2, 8], { seed: 2 }));
    const q = upload(g, randn([1, 4, 8], { seed: 3 }));
    const config = new LandmarkRetrieval({ blockSize: 3, topK: 2 });
    try {
      assert.throws(
        () =>
          landmarkDecodeWebGpu(
            g,
            { ...config, aggregate: "mean" as LandmarkAggregate },
            q,
            store.view(0),
          ),
        (e: unknown) => e instanceof TypeError && /aggregate/.test(e.message),
      );
      assert.throws(
        () => landmarkDecodeWebGpu(g, { ...config, blockSize: 0 }, q, store.view(0)),
        (e: unknown) => e instanceof RangeError && /blockSize/.test(e.message),
      );
      assert.throws(
        () => landmarkDecodeWebGpu(g, config, q, store.view(0), { start: 20 }),
        (e: unknown) => e instanceof RangeError && /cache must hold the chunk/.test(e.message),
      );
      const q3 = upload(g, randn([1, 3, 8], { seed: 4 }));
      assert.throws(
        () => landmarkDecodeWebGpu(g, config, q3, store.view(0)),
        (e: unknown) => e instanceof TypeError && /does not fit the store/.test(e.message),
      );
      releaseTensor(g, q3);
      assert.throws(
        () => landmarkDecodeWebGpu(g, config, q, store.view(0), { rope: new Rope({ headDim: 4 }) }),
        (e: unknown) => e instanceof TypeError && /rope headDim/.test(e.message),
      );
      // A valid call after the failures still runs: 20 tokens = 5 blocks of 4, 2 retrieved.
      const step = landmarkDecodeWebGpu(g, config, q, store.view(0));
      assert.equal(step.k, 2);
      assert.deepEqual(step.blocks!.shape, [1, 2, 2]);
      const got = await downloadState(g, step);
      assert.ok(got.out.data.every(Number.isFinite));
      releaseState(g, step);
      releaseTensor(g, step.blocks!);
      await g.checkErrors();
    } finally {
      releaseTensor(g, q);
      store.destroy();
    }
  },
});
