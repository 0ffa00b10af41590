// Copyright 2026 the longctx authors. MIT license.

/**
 * WebGPU kernels against the CPU reference: dense decode (32 query heads /
 * 8 KV heads × 128 dims × {4k, 32k} tokens) and causal prefill (8 heads × 64
 * dims × {1k, 4k} tokens), with the CPU `denseAttention` as the baseline in
 * every group.
 *
 * ```sh
 * deno run -A bench/gpu_bench.ts                 # every group
 * deno run -A bench/gpu_bench.ts --quick         # 4k decode + 1k prefill, few samples
 * deno run -A bench/gpu_bench.ts --json bench/results/gpu.json
 * deno run -A bench/gpu_bench.ts --all-on-software   # also 4k prefill on lavapipe (minutes per call)
 * ```
 *
 * Which adapter ran is printed first; a software adapter (Mesa lavapipe or
 * llvmpipe, SwiftShader) is labelled `(software)`: its "GPU" timings are CPU
 * timings of a Vulkan emulation sharing the cores with the CPU baseline.
 *
 * Wall time of a GPU variant covers encoding, submission and
 * `await device.queue.onSubmittedWorkDone()` with the operands resident on the
 * device (the `+ read-back` variant also downloads `{ out, lse }`). The `GPU ms`
 * column is the median over a few runs of the summed compute-pass durations
 * from timestamp queries (`GpuContext.profile`), where the adapter has
 * `timestamp-query`. Every variant is checked against `denseAttention` before
 * it is timed. A GPU variant slower than 2 s per call (a software adapter) is
 * timed by those profiling runs instead of mitata's sampling.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { measure } from "npm:mitata@1.0.34";
import { denseAttention } from "../attention/dense.ts";
import type { AttentionInput } from "../attention/types.ts";
import { describeAdapter, type GpuContext, tryRequestGpu } from "../gpu/device.ts";
import { denseDecodeWebGpu } from "../gpu/dense_decode.ts";
import { densePrefillWebGpu } from "../gpu/dense_prefill.ts";
import { GpuKvStore } from "../gpu/kv_store.ts";
import {
  downloadState,
  type GpuAttentionState,
  releaseState,
  releaseTensor,
  upload,
} from "../gpu/tensor.ts";
import { randn } from "../tensor/random.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    json: { type: "string" },
    "all-on-software": { type: "boolean", default: false },
  },
});
const QUICK = args.values.quick;
const JSON_OUT = args.values.json;
const ALL_ON_SOFTWARE = args.values["all-on-software"];
/** A GPU variant slower than this per call is timed by its profiling runs, not by mitata. */
const SLOW_MS = 2000;

interface Case {
  group: string;
  name: string;
  fn: () => unknown;
  baseline: boolean;
  /** GPU time in ns of one call (median of timestamp-query runs); undefined on the CPU. */
  gpuNs?: number;
  /** Max |out − denseAttention out|. */
  maxDiff: number;
  /** Wall times of the profiling runs, when a call is too slow for mitata's sampling. */
  fixedMs?: number[];
}

const probe = await tryRequestGpu();
const gpu = probe.gpu;
console.log(`adapter: ${gpu ? describeAdapter(gpu.adapter) : `none (${probe.reason})`}`);
if (gpu?.adapter.software) {
  console.log(
    "  software-rendered: the WebGPU rows below are CPU timings of Mesa's Vulkan emulation,",
  );
  console.log("  on the same cores as the CPU baseline; they are not GPU timings");
}
if (gpu !== undefined) {
  console.log(
    `  features ${
      JSON.stringify(gpu.features)
    }; maxStorageBufferBindingSize ${gpu.limits.maxStorageBufferBindingSize}`,
  );
}
console.log(
  `CPU: ${navigator.hardwareConcurrency} logical cores, load average ${
    Deno.loadavg().map((x) => x.toFixed(2)).join(" ")
  }; Deno ${Deno.version.deno}${QUICK ? "; QUICK mode (few samples)" : ""}`,
);

const cases: Case[] = [];
const cleanups: Array<() => void> = [];
const tokensLabel = (t: number): string => t % 1024 === 0 ? `${t / 1024}k` : `${t}`;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** A GPU variant: `run` submits and returns the state; timed as run + onSubmittedWorkDone. */
async function gpuCase(
  g: GpuContext,
  group: string,
  name: string,
  run: () => GpuAttentionState,
  want: Float32Array,
  readBack = false,
): Promise<void> {
  const first = run();
  const got = await downloadState(g, first);
  releaseState(g, first);
  await g.checkErrors();
  const maxDiff = maxAbsDiff(got.out.data, want);
  if (!(maxDiff <= 2e-3)) {
    throw new Error(`Cannot run bench: ${name} differs from denseAttention by ${maxDiff}`);
  }
  const gpuRuns: number[] = [], wallMs: number[] = [];
  for (let i = 0; i < (QUICK ? 2 : 5); i++) {
    const t0 = performance.now();
    const p = await g.profile(() => run());
    wallMs.push(performance.now() - t0);
    releaseState(g, p.result);
    if (p.gpuNs !== undefined) gpuRuns.push(p.gpuNs);
    if (wallMs[0]! > SLOW_MS) break;
  }
  gpuRuns.sort((a, b) => a - b);
  const fn = readBack
    ? async () => {
      const st = run();
      await downloadState(g, st);
      releaseState(g, st);
    }
    : async () => {
      const st = run();
      await g.device.queue.onSubmittedWorkDone();
      releaseState(g, st);
    };
  cases.push({
    group,
    name,
    fn,
    baseline: false,
    maxDiff,
    ...(gpuRuns.length > 0 ? { gpuNs: gpuRuns[gpuRuns.length >> 1]! } : {}),
    ...(wallMs[0]! > SLOW_MS ? { fixedMs: wallMs } : {}),
  });
}

function inputs(tq: number, tk: number, h: number, hkv: number, d: number): AttentionInput {
  return {
    query: randn([tq, h, d], { seed: 1, layout: "thd" }),
    key: randn([tk, hkv, d], { seed: 2, layout: "thd" }),
    value: randn([tk, hkv, d], { seed: 3, layout: "thd" }),
  };
}

const decodeTokens = QUICK ? [4096] : [4096, 32768];
const prefillTokens = QUICK ? [1024] : [1024, 4096];

for (const tokens of decodeTokens) {
  const [heads, kvHeads, d] = [32, 8, 128];
  const group = `decode heads=${heads} kvHeads=${kvHeads} headDim=${d} tokens=${
    tokensLabel(tokens)
  }`;
  console.log(`setting up ${group}`);
  const input = inputs(1, tokens, heads, kvHeads, d);
  const want = denseAttention(input).out.data;
  cases.push({
    group,
    name: "denseAttention (CPU, f32)",
    fn: () => denseAttention(input),
    baseline: true,
    maxDiff: 0,
  });
  if (gpu === undefined) continue;
  const g = gpu;
  const q = upload(g, input.query), k = upload(g, input.key), v = upload(g, input.value);
  cleanups.push(() => [q, k, v].forEach((t) => releaseTensor(g, t)));
  await gpuCase(
    g,
    group,
    "WebGPU split-K decode, f32 K/V tensors",
    () => denseDecodeWebGpu(g, { query: q, key: k, value: v }),
    want,
  );
  const store = new GpuKvStore(g, {
    layers: 1,
    kvHeads,
    headDim: d,
    capacity: tokens,
    dtype: g.features.shaderF16 ? "f16" : "f32",
  });
  store.append(0, input.key, input.value);
  cleanups.push(() => store.destroy());
  const view = store.view(0);
  await gpuCase(
    g,
    group,
    `WebGPU split-K decode, ${store.dtype} GpuKvStore`,
    () => denseDecodeWebGpu(g, { query: q, kv: view }),
    want,
  );
  await gpuCase(
    g,
    group,
    `WebGPU split-K decode, ${store.dtype} GpuKvStore + read-back`,
    () => denseDecodeWebGpu(g, { query: q, kv: view }),
    want,
    true,
  );
}

for (const tokens of prefillTokens) {
  const [heads, d] = [8, 64];
  const group = `prefill causal heads=${heads} headDim=${d} tokens=${tokensLabel(tokens)}`;
  console.log(`setting up ${group}`);
  const input = inputs(tokens, tokens, heads, heads, d);
  const want = denseAttention(input).out.data;
  cases.push({
    group,
    name: "denseAttention (CPU, f32)",
    fn: () => denseAttention(input),
    baseline: true,
    maxDiff: 0,
  });
  if (gpu === undefined) continue;
  if (gpu.adapter.software && tokens > 1024 && !ALL_ON_SOFTWARE) {
    console.log(
      "  WebGPU variants skipped on a software adapter (minutes per call); pass --all-on-software",
    );
    continue;
  }
  const g = gpu;
  const q = upload(g, input.query);
  for (const dtype of g.features.shaderF16 ? ["f32", "f16"] as const : ["f32"] as const) {
    const k = upload(g, input.key, { dtype }), v = upload(g, input.value, { dtype });
    cleanups.push(() => [k, v].forEach((t) => releaseTensor(g, t)));
    await gpuCase(
      g,
      group,
      `WebGPU tiled prefill, ${dtype} K/V`,
      () => densePrefillWebGpu(g, { query: q, key: k, value: v }),
      want,
    );
  }
  cleanups.push(() => releaseTensor(gpu, q));
}

// ---------------------------------------------------------------------------
// Timing: mitata's measure() per case (slow cases get few samples).

interface Timing {
  avgNs: number;
  minNs: number;
  samples: number;
}
const timings: Timing[] = [];
for (const c of cases) {
  if (c.fixedMs !== undefined) {
    const avg = c.fixedMs.reduce((a, b) => a + b, 0) / c.fixedMs.length;
    timings.push({
      avgNs: avg * 1e6,
      minNs: Math.min(...c.fixedMs) * 1e6,
      samples: c.fixedMs.length,
    });
    console.log(
      `  ${c.group} | ${c.name}: ${avg.toFixed(2)} ms/iter (profiling runs; too slow to sample)`,
    );
    continue;
  }
  const s = await measure(c.fn, {
    min_samples: QUICK ? 3 : 8,
    max_samples: QUICK ? 8 : 50,
    min_cpu_time: (QUICK ? 300 : 1000) * 1e6,
    warmup_samples: 1,
  });
  timings.push({ avgNs: s.avg, minNs: s.min, samples: s.samples.length });
  console.log(`  ${c.group} | ${c.name}: ${(s.avg / 1e6).toFixed(2)} ms/iter`);
}
for (const f of cleanups) f();

// ---------------------------------------------------------------------------
// Table.

const fmt = (x: number | undefined, digits = 2): string =>
  x !== undefined && Number.isFinite(x) ? x.toFixed(digits) : "—";
const header = ["impl", "avg ms", "min ms", "GPU ms", "× CPU", "max |Δ|", "samples"];
interface Row {
  group: string;
  impl: string;
  avgMs: number;
  minMs: number;
  gpuMs: number | null;
  vsCpu: number;
  maxDiff: number;
  samples: number;
}
const rows: Row[] = [];
for (const grp of [...new Set(cases.map((c) => c.group))]) {
  const idx = cases.flatMap((c, i) => c.group === grp ? [i] : []);
  const base = idx.find((i) => cases[i]!.baseline)!;
  console.log();
  console.log(grp);
  const table: string[][] = [header];
  for (const i of idx) {
    const c = cases[i]!, t = timings[i]!;
    const row: Row = {
      group: grp,
      impl: c.name,
      avgMs: t.avgNs / 1e6,
      minMs: t.minNs / 1e6,
      gpuMs: c.gpuNs === undefined ? null : c.gpuNs / 1e6,
      vsCpu: timings[base]!.avgNs / t.avgNs,
      maxDiff: c.maxDiff,
      samples: t.samples,
    };
    rows.push(row);
    table.push([
      row.impl,
      fmt(row.avgMs),
      fmt(row.minMs),
      fmt(row.gpuMs ?? undefined),
      `${fmt(row.vsCpu)}×`,
      row.maxDiff === 0 ? "—" : row.maxDiff.toExponential(1),
      String(row.samples),
    ]);
  }
  const widths = header.map((_, k) => Math.max(...table.map((r) => r[k]!.length)));
  for (const r of table) {
    console.log(
      "  " + r.map((cell, k) => k === 0 ? cell.padEnd(widths[k]!) : cell.padStart(widths[k]!))
        .join("  "),
    );
  }
}

if (JSON_OUT !== undefined) {
  await Deno.writeTextFile(
    JSON_OUT,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        quick: QUICK,
        deno: Deno.version,
        adapter: gpu?.adapter ?? null,
        features: gpu?.features ?? null,
        loadavg: Deno.loadavg(),
        rows,
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`\nwrote ${JSON_OUT}`);
}
gpu?.destroy();
