// Copyright 2026 the longctx authors. MIT license.
import assert from "node:assert/strict";
import { denseAttention } from "../attention/dense.ts";
import {
  type HeadSelection,
  headSelection,
  renumberContiguous,
  selectAll,
  type Selection,
} from "../attention/selection.ts";
import { createAttendStats, sparseAttend } from "../attention/sparse_attend.ts";
import { KvStore } from "../kv/kv_store.ts";
import { Rope } from "../positional/rope.ts";
import { randn } from "../tensor/random.ts";
import { assertClose, maxAbsDiff } from "../tests/_util.ts";
import { type GpuContext, tryRequestGpu } from "./device.ts";
import { GpuKvStore, kvViewOfTensors } from "./kv_store.ts";
import { sparseAttendWebGpu, type SparseAttendWebGpuOptions } from "./sparse_attend.ts";
import { downloadState, releaseState, upload } from "./tensor.ts";

const probe = await tryRequestGpu();
const gpu = probe.gpu;
if (gpu === undefined) {
  console.log(`gpu/sparse_attend_test.ts: skipping WebGPU parity tests: ${probe.reason}`);
}
const ignore = gpu === undefined;

interface Case {
  keyForm: "pre-rope" | "post-rope";
  dtype: "f32" | "f16";
  rope?: Rope;
  positions: number[];
  heads: number;
  kvHeads: number;
  headDim: number;
  selections: (t: number) => Selection[];
  queryPositions: number[];
  softCap?: number;
}

/** Builds the same cache on the CPU and the GPU, runs both kernels, compares. */
async function parity(g: GpuContext, c: Case, chunkTokens = 50): Promise<number> {
  const t = c.positions.length;
  const key = randn([t, c.kvHeads, c.headDim], { seed: 21 });
  const value = randn([t, c.kvHeads, c.headDim], { seed: 22 });
  const cpu = new KvStore({
    layers: 1,
    kvHeads: c.kvHeads,
    headDim: c.headDim,
    pageSize: 23,
    keyForm: c.keyForm,
    dtype: c.dtype,
  });
  cpu.append(0, key, value, c.positions);
  const elem = c.dtype === "f16" ? 2 : 4;
  const rowStride = c.dtype === "f16" ? c.headDim + (c.headDim & 1) : c.headDim;
  const store = new GpuKvStore(g, {
    layers: 1,
    kvHeads: c.kvHeads,
    headDim: c.headDim,
    capacity: t + 10,
    pageSize: 16,
    keyForm: c.keyForm,
    dtype: c.dtype,
    maxSegmentBytes: 5 * 16 * c.kvHeads * rowStride * elem,
  });
  store.append(0, key, value, c.positions);
  const tq = c.queryPositions.length;
  const query = randn([tq, c.heads, c.headDim], { seed: 23 });
  const selections = c.selections(t);
  const common = {
    queryPositions: c.queryPositions,
    ...(c.rope !== undefined ? { rope: c.rope } : {}),
    ...(c.softCap !== undefined ? { softCap: c.softCap } : {}),
  };
  const cpuStats = createAttendStats(c.heads), gpuStats = createAttendStats(c.heads);
  const ref = sparseAttend(query, cpu, selections, { layer: 0, ...common, stats: cpuStats });
  const options: SparseAttendWebGpuOptions = { ...common, chunkTokens, stats: gpuStats };
  const st = sparseAttendWebGpu(g, upload(g, query), store.view(0), selections, options);
  const got = await downloadState(g, st);
  releaseState(g, st);
  store.destroy();
  const label = `${c.keyForm} ${c.rope?.layout ?? "no rope"} ${c.dtype}`;
  const tol = c.dtype === "f16" ? { atol: 1e-4, rtol: 1e-3 } : { atol: 2e-5, rtol: 1e-4 };
  assertClose(got.out.data, ref.out.data, { ...tol, label: `${label} out` });
  assertClose(got.lse.data, ref.lse.data, { atol: tol.atol, rtol: 1e-5, label: `${label} lse` });
  assert.deepEqual(gpuStats, cpuStats);
  await g.checkErrors();
  return maxAbsDiff(got.out.data, ref.out.data);
}

/**
 * Per query token: sinks ∪ window re-indexed, a re-mapped middle, everything, an empty head,
 * and a re-mapped span across a gap in positions.
 */
function mixed(heads: number, kvHeads: number) {
  return (t: number): Selection[] => {
    const sinkWindow = renumberContiguous(headSelection([[0, 4], [t - 40, t]]));
    const middle = headSelection([[10, 60], [90, 120]], { seenAt: [500, 600], queryAt: 700 });
    const everything = selectAll(t);
    const nothing = headSelection([]);
    // Crosses the gap in positions with a re-mapping: keys are rotated one by one.
    const crossing = renumberContiguous(headSelection([[50, 100]]), { start: 3 });
    const pick = [sinkWindow, middle, everything, nothing, crossing];
    const group = heads / kvHeads;
    // Token 0: one selection per KV head (shared by its group); token 1: a different one per head.
    return [
      Array.from({ length: heads }, (_, h) => pick[Math.floor(h / group) % 5]!),
      Array.from({ length: heads }, (_, h) => pick[(h + 1) % 5]!),
    ];
  };
}

// Positions with a gap (an evicted stretch) so post-RoPE spans exercise both the query-shift
// path and the per-key rotation path.
const gapped = (t: number): number[] => Array.from({ length: t }, (_, i) => (i < 70 ? i : i + 30));

for (const keyForm of ["post-rope", "pre-rope"] as const) {
  for (const layout of ["halves", "adjacent"] as const) {
    for (const dtype of ["f32", "f16"] as const) {
      Deno.test({
        name: `sparseAttendWebGpu() equals sparseAttend (${keyForm}, ${layout}, ${dtype})`,
        ignore,
        fn: async () => {
          const err = await parity(gpu!, {
            keyForm,
            dtype,
            rope: new Rope({ headDim: 16, layout }),
            positions: gapped(157),
            heads: 8,
            kvHeads: 2,
            headDim: 16,
            selections: mixed(8, 2),
            queryPositions: [186, 187],
          });
          console.log(`  max |Δ out| = ${err.toExponential(2)}`);
        },
      });
    }
  }
}

Deno.test({
  name: "sparseAttendWebGpu() with every token at original positions equals dense attention",
  ignore,
  fn: async () => {
    const g = gpu!;
    let worst = 0;
    for (const t of [1, 3, 19, 97, 1177]) {
      const [heads, kvHeads, d] = [6, 2, 12];
      const key = randn([t, kvHeads, d], { seed: t }),
        value = randn([t, kvHeads, d], { seed: t + 1 });
      const query = randn([1, heads, d], { seed: t + 2 });
      const kv = kvViewOfTensors(g, upload(g, key), upload(g, value));
      const all = selectAll(t);
      const st = await downloadState(
        g,
        sparseAttendWebGpu(g, upload(g, query), kv, [Array(heads).fill(all)], {
          queryPositions: [t - 1],
          chunkTokens: 100,
        }),
      );
      const ref = denseAttention({ query, key, value });
      assertClose(st.out.data, ref.out.data, { atol: 1e-5, rtol: 1e-4, label: `T=${t}` });
      assertClose(st.lse.data, ref.lse.data, { atol: 1e-5, rtol: 1e-5, label: `T=${t} lse` });
      worst = Math.max(worst, maxAbsDiff(st.out.data, ref.out.data));
    }
    console.log(`  max |Δ out| = ${worst.toExponential(2)}`);
    await g.checkErrors();
  },
});

Deno.test({
  name: "sparseAttendWebGpu() applies YaRN's attention factor, soft-cap and MQA groups",
  ignore,
  fn: async () => {
    await parity(gpu!, {
      keyForm: "pre-rope",
      dtype: "f32",
      rope: new Rope({
        headDim: 8,
        scaling: { type: "yarn", factor: 4, originalMaxPosition: 64 },
      }),
      positions: gapped(130),
      heads: 5,
      kvHeads: 1,
      headDim: 8,
      selections: mixed(5, 1),
      queryPositions: [159, 160],
      softCap: 4,
    }, 33);
  },
});

Deno.test({
  name: "sparseAttendWebGpu() rotates exactly at positions beyond the 65536-entry CPU table",
  ignore,
  fn: async () => {
    const big = (t: number) => Array.from({ length: t }, (_, i) => 3_000_000 + 7 * i);
    for (const keyForm of ["pre-rope", "post-rope"] as const) {
      await parity(gpu!, {
        keyForm,
        dtype: "f32",
        rope: new Rope({ headDim: 16, base: 500000 }),
        positions: big(120),
        heads: 4,
        kvHeads: 2,
        headDim: 16,
        selections: () => {
          const all = selectAll(120);
          const far = headSelection([[5, 40]], { seenAt: [9_000_000], queryAt: 9_000_100 });
          return [[all, all, far, far]];
        },
        queryPositions: [3_001_000],
      });
    }
  },
});

Deno.test({
  name: "sparseAttendWebGpu() validates selections and positions",
  ignore,
  fn: () => {
    const g = gpu!;
    const store = new GpuKvStore(g, { layers: 1, kvHeads: 1, headDim: 4, capacity: 16 });
    store.append(0, randn([10, 1, 4], { seed: 1 }), randn([10, 1, 4], { seed: 2 }));
    const q = upload(g, randn([1, 2, 4], { seed: 3 }));
    const all = selectAll(10);
    const rope = new Rope({ headDim: 4 });
    const beyond: HeadSelection = { spans: Int32Array.of(0, 11) };
    assert.throws(
      () => sparseAttendWebGpu(g, q, store.view(0), [[beyond, beyond]], { queryPositions: [9] }),
      RangeError,
    );
    assert.throws(
      () => sparseAttendWebGpu(g, q, store.view(0), [[all]], { queryPositions: [9] }),
      TypeError,
    );
    assert.throws(
      () => sparseAttendWebGpu(g, q, store.view(0), [[all, all]], { queryPositions: [] }),
      TypeError,
    );
    assert.throws(
      () => sparseAttendWebGpu(g, q, store.view(0), [[all, all]], { queryPositions: [9.5], rope }),
      /integer/,
    );
    const kv = kvViewOfTensors(
      g,
      upload(g, randn([10, 1, 4], { seed: 1 })),
      upload(g, randn([10, 1, 4], { seed: 2 })),
    );
    assert.throws(
      () => sparseAttendWebGpu(g, q, kv, [[all, all]], { queryPositions: [9], rope }),
      /positions/,
    );
    store.destroy();
  },
});
