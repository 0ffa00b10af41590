// Copyright 2026 the longctx authors. MIT license.

/**
 * Squeezed Attention's WebGPU fast paths against the CPU reference in the
 * same run:
 *
 * 1. k-means assignment step (+ update-step sums) of one head's keys:
 *    `kmeansAssignWebGpu` vs `kmeans(points, { init, iterations: 0 })` (the
 *    CPU's first full assignment pass plus the cluster means), cosine geometry,
 *    C = 5% of the keys.
 * 2. Decode step: `squeezedAttentionWebGpu` vs `squeezedAttention`, one query
 *    token, 32 query heads / 8 KV heads × 128 dims, N fixed tokens (C = 5%,
 *    observation window 100) + 16 dynamic tokens, budget 10% and a threshold,
 *    one-level index, `gqa: "kv-head"`.
 *
 * Every GPU variant is checked first (the same assignments up to near ties;
 * `out` within 2e-5 + 1e-4·|ref| and the same fixed keys read). The GPU step
 * includes its one read-back of the kept spans (the attend is planned on the
 * host) and `onSubmittedWorkDone`; `+ read-back` also downloads `{ out, lse }`.
 * On a software adapter (Mesa lavapipe) the GPU rows are CPU timings of a
 * Vulkan emulation sharing the cores with the baseline, labelled "lavapipe
 * (CPU), not GPU timings".
 *
 * Synthetic keys (seeded), as in `squeezed_bench.ts`: 256 topic centres per
 * KV head (entries N(0, 1)); the context is a sequence of topic segments
 * (geometric length, mean 16 tokens), each key its segment's centre +
 * N(0, 0.5²) noise; values N(0, 1); the query
 * points at two random context keys' topics with strength 10/√d plus N(0, 1).
 *
 * ```sh
 * deno run -A bench/squeezed_gpu_bench.ts            # N = 8192 and 32768
 * deno run -A bench/squeezed_gpu_bench.ts --quick    # N = 4096, few samples
 * deno run -A bench/squeezed_gpu_bench.ts --lengths 8192
 * deno run -A bench/squeezed_gpu_bench.ts --json bench/results/squeezed_gpu.json
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { measure } from "npm:mitata@1.0.34";
import { kmeans } from "../attention/kmeans.ts";
import { buildSqueezedIndex, squeezedAttention } from "../attention/squeezed.ts";
import { Rng } from "../tensor/random.ts";
import { sliceAxis, tensor } from "../tensor/tensor.ts";
import type { Tensor } from "../tensor/types.ts";
import { describeAdapter, type GpuContext, tryRequestGpu } from "../gpu/device.ts";
import { kmeansAssignWebGpu } from "../gpu/kmeans.ts";
import { kvViewOfTensors } from "../gpu/kv_store.ts";
import {
  releaseSqueezedLayer,
  squeezedAttentionWebGpu,
  uploadSqueezedLayer,
} from "../gpu/squeezed.ts";
import { download, downloadState, releaseState, releaseTensor, upload } from "../gpu/tensor.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    lengths: { type: "string" },
    json: { type: "string" },
  },
});
const QUICK = args.values.quick;
const HEADS = 32, KV = 8, D = 128, DYNAMIC = 16, OBS = 100, TOPICS = 256;
const LENGTHS = (args.values.lengths ?? (QUICK ? "4096" : "8192,32768")).split(",").map(Number);

const probe = await tryRequestGpu();
const gpu = probe.gpu;
const software = gpu?.adapter.software ?? false;
const adapter = gpu ? describeAdapter(gpu.adapter) : `none (${probe.reason})`;
const gpuLabel = software ? "lavapipe (CPU), not GPU timings" : "GPU";
console.log(`adapter: ${adapter}`);
console.log(
  `CPU: ${navigator.hardwareConcurrency} logical cores, load average ${
    Deno.loadavg().map((x) => x.toFixed(2)).join(" ")
  }; Deno ${Deno.version.deno}${QUICK ? "; QUICK mode (few samples)" : ""}`,
);

interface Row {
  problem: string;
  impl: string;
  avgMs: number;
  minMs: number;
  samples: number;
  vsBaseline: number;
  check: string;
}
const rows: Row[] = [];
const opts = { min_samples: QUICK ? 3 : 8, min_cpu_time: QUICK ? 200e6 : 1000e6 };

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Topic-structured keys `[n, KV, D]`, values, and one decode query. */
function data(
  n: number,
  seed: number,
): { key: Tensor<"f32">; value: Tensor<"f32">; query: Tensor<"f32"> } {
  const rng = new Rng(seed);
  const centre = new Float32Array(KV * TOPICS * D);
  rng.fillNormal(centre, 0, 1);
  const key = new Float32Array(n * KV * D);
  rng.fillNormal(key, 0, 0.5);
  for (let h = 0; h < KV; h++) {
    let t = 0;
    for (let j = 0; j < n; j++) {
      // Topic segments of geometric length, mean 16 tokens.
      if (j === 0 || rng.uniform() < 1 / 16) t = Math.floor(rng.uniform() * TOPICS);
      for (let e = 0; e < D; e++) key[(j * KV + h) * D + e]! += centre[(h * TOPICS + t) * D + e]!;
    }
  }
  const value = new Float32Array(n * KV * D);
  rng.fillNormal(value, 0, 1);
  const query = new Float32Array(HEADS * D);
  rng.fillNormal(query, 0, 1);
  const s = 10 / Math.sqrt(D);
  for (let h = 0; h < HEADS; h++) {
    const kh = Math.floor(h / (HEADS / KV));
    for (const w of [1, 0.6]) {
      const j = Math.floor(rng.uniform() * (n - DYNAMIC));
      for (let e = 0; e < D; e++) query[h * D + e]! += s * w * key[(j * KV + kh) * D + e]!;
    }
  }
  return {
    key: tensor(key, [n, KV, D], { layout: "thd" }),
    value: tensor(value, [n, KV, D], { layout: "thd" }),
    query: tensor(query, [1, HEADS, D], { layout: "thd" }),
  };
}

function print(local: Row[]): void {
  const w = Math.max(...local.map((r) => r.impl.length));
  for (const r of local) {
    console.log(
      `  ${r.impl.padEnd(w)}  avg ${r.avgMs.toFixed(3).padStart(9)} ms  min ${
        r.minMs.toFixed(3).padStart(9)
      } ms  ${r.vsBaseline.toFixed(2).padStart(6)}× baseline  ${r.check}  (${r.samples} samples)`,
    );
  }
  rows.push(...local);
}

for (const N of LENGTHS) {
  const tk = N + DYNAMIC;
  console.log(`\nsetting up N = ${N} fixed tokens`);
  const { key, value, query } = data(tk, N);

  // --- 1. k-means assignment step of KV head 0's clustered keys. ---------------------
  {
    const n = N - OBS, C = Math.floor(0.05 * n);
    const pts = new Float32Array(n * D);
    for (let j = 0; j < n; j++) pts.set(key.data.subarray(j * KV * D, j * KV * D + D), j * D);
    const points = tensor(pts, [n, D]);
    const rng = new Rng(7);
    const init = new Float32Array(C * D);
    for (let c = 0; c < C; c++) {
      const j = Math.floor(rng.uniform() * n);
      init.set(pts.subarray(j * D, j * D + D), c * D);
    }
    // The CPU's centres for cosine are unit length; give the GPU the same ones.
    const centres = new Float32Array(init);
    for (let c = 0; c < C; c++) {
      let s = 0;
      for (let e = 0; e < D; e++) s += centres[c * D + e]! ** 2;
      for (let e = 0; e < D; e++) centres[c * D + e]! /= Math.sqrt(s);
    }
    const cpuStep = () => kmeans(points, { clusters: C, init, iterations: 0, geometry: "cosine" });
    const ref = cpuStep();
    const local: Row[] = [];
    const problem = `k-means assign n=${n} C=${C} d=${D}`;
    const base = await measure(() => cpuStep(), opts);
    local.push({
      problem,
      impl: "CPU kmeans({ init, iterations: 0 }) (baseline)",
      avgMs: base.avg / 1e6,
      minMs: base.min / 1e6,
      samples: base.samples.length,
      vsBaseline: 1,
      check: "",
    });
    if (gpu !== undefined) {
      const g: GpuContext = gpu;
      const gp = upload(g, points), gc = upload(g, tensor(centres, [C, D]));
      const first = kmeansAssignWebGpu(g, gp, gc, { geometry: "cosine", sums: true });
      const got = (await download(g, first.assignments)).data as Int32Array;
      let differ = 0;
      for (let i = 0; i < n; i++) if (got[i] !== ref.assignments[i]) differ++;
      for (const t of [first.assignments, first.distances, first.sums!, first.counts!]) {
        releaseTensor(g, t);
      }
      await g.checkErrors();
      if (differ > n * 1e-3) {
        throw new Error(`Cannot run bench: ${differ} of ${n} assignments differ from the CPU`);
      }
      const s = await measure(async () => {
        const r = kmeansAssignWebGpu(g, gp, gc, { geometry: "cosine", sums: true });
        await download(g, r.assignments);
        for (const t of [r.assignments, r.distances, r.sums!, r.counts!]) releaseTensor(g, t);
      }, opts);
      local.push({
        problem,
        impl: `kmeansAssignWebGpu + sums + read-back [${gpuLabel}]`,
        avgMs: s.avg / 1e6,
        minMs: s.min / 1e6,
        samples: s.samples.length,
        vsBaseline: base.avg / s.avg,
        check: `${differ} of ${n} labels differ (near ties)`,
      });
      releaseTensor(g, gp);
      releaseTensor(g, gc);
    }
    console.log(problem);
    print(local);
  }

  // --- 2. Decode step. -----------------------------------------------------------------
  console.log(`building the index (k-means of ${KV} heads × ${N - OBS} keys, 20 iterations)`);
  const index = buildSqueezedIndex([sliceAxis(key, 0, 0, N)], {
    observationWindow: OBS,
    iterations: 20,
  });
  const C = index.heads[0]!.fine.sizes.length;
  for (const mode of [{ budget: 0.1 }, { threshold: 1 / (N - OBS) }]) {
    const problem = `decode N=${N}+${DYNAMIC} heads=${HEADS}/${KV} d=${D} C=${C} ${
      JSON.stringify(mode)
    }`;
    const cpuStep = () => squeezedAttention({ query, key, value }, { index, ...mode });
    const ref = cpuStep();
    const local: Row[] = [];
    const base = await measure(() => cpuStep(), opts);
    const read = ref.fixedKeysRead.reduce((a, b) => a + b, 0) / ref.fixedKeysRead.length;
    local.push({
      problem,
      impl: "CPU squeezedAttention (baseline)",
      avgMs: base.avg / 1e6,
      minMs: base.min / 1e6,
      samples: base.samples.length,
      vsBaseline: 1,
      check: `fixed keys read ${read.toFixed(0)} of ${N}`,
    });
    if (gpu !== undefined) {
      const g: GpuContext = gpu;
      const layer = uploadSqueezedLayer(g, index);
      const kg = upload(g, key), vg = upload(g, value), qg = upload(g, query);
      const kv = kvViewOfTensors(g, kg, vg);
      const first = await squeezedAttentionWebGpu(g, layer, qg, kv, mode);
      const got = await downloadState(g, first);
      releaseState(g, first);
      await g.checkErrors();
      const diff = maxAbsDiff(got.out.data, ref.out.data);
      const same = first.fixedKeysRead.every((x, i) => x === ref.fixedKeysRead[i]);
      if (!(diff <= 2e-4) || !same) {
        throw new Error(`Cannot run bench: out differs by ${diff}, same keys read: ${same}`);
      }
      const submitted = await measure(async () => {
        const st = await squeezedAttentionWebGpu(g, layer, qg, kv, mode);
        await g.device.queue.onSubmittedWorkDone();
        releaseState(g, st);
      }, opts);
      const readBack = await measure(async () => {
        const st = await squeezedAttentionWebGpu(g, layer, qg, kv, mode);
        await downloadState(g, st);
        releaseState(g, st);
      }, opts);
      for (
        const [name, s] of [["squeezedAttentionWebGpu", submitted], [
          "squeezedAttentionWebGpu + read-back",
          readBack,
        ]] as const
      ) {
        local.push({
          problem,
          impl: `${name} [${gpuLabel}]`,
          avgMs: s.avg / 1e6,
          minMs: s.min / 1e6,
          samples: s.samples.length,
          vsBaseline: base.avg / s.avg,
          check: `max|Δout| ${diff.toExponential(1)}`,
        });
      }
      for (const t of [kg, vg, qg]) releaseTensor(g, t);
      releaseSqueezedLayer(g, layer);
    }
    console.log(problem);
    print(local);
  }
}

if (args.values.json !== undefined) {
  await Deno.writeTextFile(
    args.values.json,
    JSON.stringify(
      { date: new Date().toISOString(), quick: QUICK, adapter, software, deno: Deno.version, rows },
      null,
      2,
    ) + "\n",
  );
  console.log(`\nwrote ${args.values.json}`);
}
