// Copyright 2026 the longctx authors. MIT license.

/**
 * Landmark Attention decode step on WebGPU (`landmarkDecodeWebGpu`) against
 * the CPU reference in the same run (`LandmarkRetrieval.selectChunk` +
 * `landmarkAttend` over a `KvStore`, landmark keys already cached): one query
 * token, 32 query heads / 8 KV heads × 128 dims, post-RoPE f32 keys, blocks
 * of 64 (63 content tokens + the landmark), k = 4, `gqa: "kv-head"`.
 *
 * ```sh
 * deno run -A bench/landmark_gpu_bench.ts            # 4k and 16k tokens
 * deno run -A bench/landmark_gpu_bench.ts --quick    # 4k only, few samples
 * deno run -A bench/landmark_gpu_bench.ts --json bench/results/landmark_gpu.json
 * ```
 *
 * Every GPU variant is checked first: the same retrieved blocks as the CPU
 * reference and `out` within 2e-4. Wall time of a GPU variant covers
 * planning, encoding, submission and `onSubmittedWorkDone` with the cache
 * resident on the device (`+ read-back` also downloads `{ out, lse }` and
 * the blocks). On a software adapter (Mesa lavapipe) the GPU rows are CPU
 * timings of a Vulkan emulation sharing the cores with the baseline, and
 * are labelled so: they are not GPU timings.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { measure } from "npm:mitata@1.0.34";
import {
  landmarkAttend,
  type LandmarkHeadSelection,
  LandmarkRetrieval,
} from "../attention/landmark.ts";
import { KvStore } from "../kv/kv_store.ts";
import { Rope } from "../positional/rope.ts";
import { randn } from "../tensor/random.ts";
import { describeAdapter, type GpuContext, tryRequestGpu } from "../gpu/device.ts";
import { GpuKvStore } from "../gpu/kv_store.ts";
import { landmarkDecodeWebGpu } from "../gpu/landmark.ts";
import { download, downloadState, releaseState, releaseTensor, upload } from "../gpu/tensor.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    json: { type: "string" },
  },
});
const QUICK = args.values.quick;
const HEADS = 32, KV = 8, D = 128, BLOCK_SIZE = 63, TOP_K = 4;
const TOKENS = QUICK ? [4096] : [4096, 16384];

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
  tokens: number;
  impl: string;
  avgMs: number;
  minMs: number;
  samples: number;
  vsBaseline: number;
  maxDiff: number;
}
const rows: Row[] = [];
const opts = { min_samples: QUICK ? 3 : 8, min_cpu_time: QUICK ? 200e6 : 1000e6 };

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

for (const tokens of TOKENS) {
  console.log(`\nsetting up ${tokens} tokens`);
  const rope = new Rope({ headDim: D });
  const keys = rope.apply(randn([tokens, KV, D], { seed: 2 }), 0);
  const values = randn([tokens, KV, D], { seed: 3 });
  const query = randn([1, HEADS, D], { seed: 1 });
  const n = tokens - 1; // the query is the last cached token
  const cpu = new KvStore({ layers: 1, kvHeads: KV, headDim: D, keyForm: "post-rope" });
  cpu.append(0, keys, values, 0);
  const retrieval = new LandmarkRetrieval({ blockSize: BLOCK_SIZE, topK: TOP_K, gqa: "kv-head" });
  const cpuStep = () => {
    const sels = retrieval.selectChunk({ store: cpu, layer: 0, query, start: n, rope });
    return {
      sels,
      state: landmarkAttend(query, cpu, sels, { layer: 0, queryPositions: [n], rope }),
    };
  };
  const ref = cpuStep();
  const local: Row[] = [];
  const base = await measure(() => cpuStep(), opts);
  local.push({
    tokens,
    impl: "CPU reference: selectChunk + landmarkAttend (baseline)",
    avgMs: base.avg / 1e6,
    minMs: base.min / 1e6,
    samples: base.samples.length,
    vsBaseline: 1,
    maxDiff: 0,
  });
  if (gpu !== undefined) {
    const g: GpuContext = gpu;
    const store = new GpuKvStore(g, {
      layers: 1,
      kvHeads: KV,
      headDim: D,
      capacity: tokens,
      keyForm: "post-rope",
      dtype: "f32",
    });
    store.append(0, keys, values, 0);
    const gq = upload(g, query);
    const run = () => landmarkDecodeWebGpu(g, retrieval, gq, store.view(0), { rope });
    // Check before timing: same blocks, out within 2e-4.
    const first = run();
    const got = await downloadState(g, first);
    const blocks = (await download(g, first.blocks!)).data as Int32Array;
    releaseState(g, first);
    releaseTensor(g, first.blocks!);
    await g.checkErrors();
    for (let kh = 0; kh < KV; kh++) {
      const sel = ref.sels[0]![kh * (HEADS / KV)] as LandmarkHeadSelection;
      const want = Array.from(sel.gates.subarray(0, first.k), (x) => (x - BLOCK_SIZE) / 64);
      const have = Array.from(blocks.subarray(kh * first.k, (kh + 1) * first.k));
      if (want.join() !== have.join()) {
        throw new Error(`Cannot run bench: KV head ${kh} blocks ${have} differ from CPU ${want}`);
      }
    }
    const diff = maxAbsDiff(got.out.data, ref.state.out.data);
    if (!(diff <= 2e-4)) throw new Error(`Cannot run bench: out differs from CPU by ${diff}`);
    const submitted = await measure(async () => {
      const st = run();
      await g.device.queue.onSubmittedWorkDone();
      releaseState(g, st);
      releaseTensor(g, st.blocks!);
    }, opts);
    const readBack = await measure(async () => {
      const st = run();
      await downloadState(g, st);
      await download(g, st.blocks!);
      releaseState(g, st);
      releaseTensor(g, st.blocks!);
    }, opts);
    for (
      const [name, s] of [["landmarkDecodeWebGpu", submitted], [
        "landmarkDecodeWebGpu + read-back",
        readBack,
      ]] as const
    ) {
      local.push({
        tokens,
        impl: `${name} [${gpuLabel}]`,
        avgMs: s.avg / 1e6,
        minMs: s.min / 1e6,
        samples: s.samples.length,
        vsBaseline: base.avg / s.avg,
        maxDiff: diff,
      });
    }
    releaseTensor(g, gq);
    store.destroy();
  }
  console.log(
    `tokens=${tokens} heads=${HEADS} kvHeads=${KV} headDim=${D} block=${BLOCK_SIZE + 1} k=${TOP_K}`,
  );
  const w = Math.max(...local.map((r) => r.impl.length));
  for (const r of local) {
    console.log(
      `  ${r.impl.padEnd(w)}  avg ${r.avgMs.toFixed(3).padStart(9)} ms  min ${
        r.minMs.toFixed(3).padStart(9)
      } ms  ${r.vsBaseline.toFixed(2).padStart(6)}× baseline  max|Δout| ${
        r.maxDiff.toExponential(1)
      }  (${r.samples} samples)`,
    );
  }
  rows.push(...local);
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
gpu?.destroy();
