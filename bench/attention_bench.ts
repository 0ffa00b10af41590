// Copyright 2026 the longctx authors. MIT license.

/**
 * Exact dense attention on the CPU: the pure-TS reference, the WASM SIMD
 * kernel, the reference on a pool of workers, and two outside baselines
 * (TensorFlow.js CPU backend, ONNX Runtime's native CPU provider), each
 * reported against a memory-bandwidth roofline measured in the same process.
 *
 * ```sh
 * deno run -A bench/attention_bench.ts                  # every group (a few minutes)
 * deno run -A bench/attention_bench.ts --quick          # 4k decode + 1k prefill, few samples (< 1 min)
 * deno run -A bench/attention_bench.ts --groups 32k --impls 'JS|Wasm'  # regexes on labels
 * deno run -A bench/attention_bench.ts --json bench/results/attention.json
 * ```
 *
 * Every variant is checked against `denseAttention` (max |Δ| ≤ 1e-4) before it
 * is timed. See bench/README.md for what each column means.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { measure } from "npm:mitata@1.0.34";
import { denseAttention } from "../attention/dense.ts";
import { denseAttentionWasm } from "../attention/dense_wasm.ts";
import { AttentionWorkers, shareTensor } from "../attention/parallel.ts";
import type { AttentionInput } from "../attention/types.ts";
import { WasmHeap } from "../attention/wasm_heap.ts";
import { copyInto } from "../tensor/tensor.ts";
import { randn } from "../tensor/random.ts";
import { type Baseline, onnxBaseline, tfjsBaseline, toThd } from "./_baselines.ts";
import { measureReadBandwidth } from "./_roofline.ts";

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    json: { type: "string" },
    groups: { type: "string" },
    impls: { type: "string" },
    workers: { type: "string", default: "2" },
  },
});
const QUICK = flags.quick!;
const WORKERS = Number(flags.workers);
const GROUPS = new RegExp(flags.groups ?? "");
const IMPLS = new RegExp(flags.impls ?? "");
/**
 * Largest prefill the outside baselines run (and not in --quick mode): they materialise a
 * [heads, T, T] score matrix, and tfjs takes seconds per 1k-token call.
 */
const BASELINE_PREFILL_MAX = 1024;
const TOLERANCE = 1e-4;

/** One timed variant, with what the derived table needs to know about its problem. */
interface Case {
  group: string;
  name: string;
  fn: () => unknown;
  baseline: boolean;
  /** Threads the variant computes with: picks the roofline it is compared to. */
  threads: number;
  /** Bytes of K and V, read once. */
  bytes: number;
  /** Floating-point operations of the exact computation. */
  flops: number;
}

const cases: Case[] = [];
const cleanups: Array<() => void> = [];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return a.length === b.length ? m : Infinity;
}

function verify(label: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  const diff = maxAbsDiff(got, want);
  const ok = diff <= TOLERANCE;
  console.log(
    `  ${ok ? "ok  " : "FAIL"} ${label}: max |Δ| vs denseAttention = ${diff.toExponential(2)}`,
  );
  if (!ok) throw new Error(`Cannot run bench: ${label} differs from denseAttention by ${diff}`);
}

const tokensLabel = (t: number): string => t % 1024 === 0 ? `${t / 1024}k` : `${t}`;

// ---------------------------------------------------------------------------

console.log(`measuring read bandwidth (256 MiB, best of 5, 1 and ${WORKERS} threads)…`);
const probe = await measureReadBandwidth({ threads: WORKERS });
const workers = await AttentionWorkers.create({ workers: WORKERS });
cleanups.push(() => workers.close());
const heap = await WasmHeap.create({ maxBytes: 2 ** 32 });

/** Registers every variant of one problem shape. */
async function addGroup(
  group: string,
  [tq, tk, heads, kvHeads, d]: readonly [number, number, number, number, number],
  flops: number,
  withBaselines: boolean,
): Promise<void> {
  if (!GROUPS.test(group)) return;
  console.log(`setting up ${group}`);
  // Q, K, V in SharedArrayBuffers (the workers read them in place) and K, V again in the
  // WASM heap (the kernel reads them in place).
  const input: AttentionInput = {
    query: shareTensor(randn([tq, heads, d], { seed: 1, layout: "thd" })),
    key: shareTensor(randn([tk, kvHeads, d], { seed: 2, layout: "thd" })),
    value: shareTensor(randn([tk, kvHeads, d], { seed: 3, layout: "thd" })),
  };
  const key = heap.alloc("f32", [tk, kvHeads, d], { layout: "thd" });
  const value = heap.alloc("f32", [tk, kvHeads, d], { layout: "thd" });
  copyInto(key, input.key);
  copyInto(value, input.value);
  const inHeap: AttentionInput = { query: input.query, key, value };
  cleanups.push(() => {
    heap.free(key);
    heap.free(value);
  });

  // Each variant included by --impls is checked against the reference, then registered.
  const want = denseAttention(input).out.data;
  const bytes = 2 * tk * kvHeads * d * 4;
  const add = async (
    name: string,
    threads: number,
    fn: () => unknown,
    result: () => Promise<ArrayLike<number>>,
    baseline = false,
  ) => {
    if (!IMPLS.test(name)) return;
    verify(name, await result(), want);
    cases.push({ group, name, fn, baseline, threads, bytes, flops });
  };
  const js = () => denseAttention(input);
  await add("denseAttention (JS)", 1, js, () => Promise.resolve(js().out.data), true);
  const wasm = () => denseAttentionWasm(inHeap);
  await add(`denseAttentionWasm (${heap.kernel})`, 1, wasm, () => Promise.resolve(wasm().out.data));
  for (const split of ["heads", "keys"] as const) {
    const fn = () => workers.attention(input, { split });
    const label = `AttentionWorkers ×${WORKERS} (${split === "keys" ? "split-K" : "heads"})`;
    await add(label, WORKERS, fn, async () => (await fn()).out.data);
  }
  if (!withBaselines) return;
  const problem = { key: input.key, value: input.value, heads, queryTokens: tq };
  const makers: Array<[string, () => Promise<Baseline>]> = [
    ["tfjs-core", () => tfjsBaseline(problem)],
    ["onnxruntime-node", () => onnxBaseline(problem, WORKERS)],
  ];
  for (const [prefix, make] of makers) {
    if (!IMPLS.test(prefix)) continue;
    const b = await make();
    cleanups.push(() => b.dispose());
    const fn = () => b.run(input.query);
    await add(b.name, b.threads, fn, async () => toThd(await fn(), tq, heads, kvHeads, d));
  }
}

for (const tokens of QUICK ? [4096] : [4096, 32768]) {
  const [heads, kvHeads, d] = [32, 8, 128];
  await addGroup(
    `decode heads=${heads} kvHeads=${kvHeads} headDim=${d} tokens=${tokensLabel(tokens)}`,
    [1, tokens, heads, kvHeads, d],
    4 * d * heads * tokens,
    true,
  );
}
for (const tokens of QUICK ? [1024] : [1024, 4096]) {
  const [heads, kvHeads, d] = [8, 8, 64];
  await addGroup(
    `prefill causal heads=${heads} headDim=${d} tokens=${tokensLabel(tokens)}`,
    [tokens, tokens, heads, kvHeads, d],
    4 * d * heads * (tokens * (tokens + 1)) / 2,
    !QUICK && tokens <= BASELINE_PREFILL_MAX,
  );
}

// ---------------------------------------------------------------------------
// Timing: mitata's `measure` per variant (warm-up, then samples until both the sample
// count and the CPU time reach their minimum).

interface Timing {
  avgNs: number;
  minNs: number;
  p50Ns: number;
  samples: number;
}

const timings: Timing[] = [];
const sampling = QUICK
  ? { min_samples: 3, max_samples: 20, min_cpu_time: 200e6, warmup_samples: 1 }
  : { min_samples: 3, max_samples: 100, min_cpu_time: 2e9, warmup_samples: 1 };
for (const c of cases) {
  const s = await measure(c.fn, sampling);
  timings.push({ avgNs: s.avg, minNs: s.min, p50Ns: s.p50, samples: s.samples.length });
  console.log(
    `  ${c.group} | ${c.name}: ${(s.avg / 1e6).toFixed(2)} ms/iter (${s.samples.length} samples)`,
  );
}
for (const f of cleanups) f();

// ---------------------------------------------------------------------------
// Derived figures.

const fmt = (x: number, digits = 2): string => Number.isFinite(x) ? x.toFixed(digits) : "—";
const load = (() => {
  try {
    return Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
  } catch {
    return "unknown";
  }
})();

console.log();
console.log(
  `bandwidth probe (${
    fmt(probe.bytes / 2 ** 20, 0)
  } MiB sequential read, best of ${probe.runs}): ` +
    `1 thread ${fmt(probe.wasmGBps, 1)} GB/s (WASM SIMD), ${fmt(probe.lineGBps, 1)} GB/s ` +
    `(JS, one load per line), ${fmt(probe.elementGBps, 1)} GB/s (JS, every f64); ` +
    `${probe.threads} threads ${fmt(probe.parallelGBps, 1)} GB/s (WASM SIMD)`,
);
console.log(
  `rooflines: 1 thread ${fmt(probe.singleGBps, 1)} GB/s, ${probe.threads} threads ${
    fmt(probe.peakGBps, 1)
  } GB/s`,
);
console.log(
  `CPU: ${navigator.hardwareConcurrency} logical cores, load average ${load}; Deno ${Deno.version.deno}, V8 ${Deno.version.v8}; WASM kernel ${heap.kernel}` +
    (QUICK ? "; QUICK mode (few samples)" : ""),
);

const header = ["impl", "threads", "avg ms", "min ms", "GB/s", "% roofline", "GFLOP/s", "× JS"];
interface Row {
  group: string;
  impl: string;
  threads: number;
  avgMs: number;
  minMs: number;
  gbps: number;
  rooflineGBps: number;
  fractionOfRoofline: number;
  gflops: number;
  vsBaseline: number;
  samples: number;
}
const rows: Row[] = [];
for (const g of [...new Set(cases.map((c) => c.group))]) {
  const idx = cases.flatMap((c, i) => c.group === g ? [i] : []);
  const base = idx.find((i) => cases[i]!.baseline);
  const c0 = cases[idx[0]!]!;
  console.log();
  console.log(
    `${g}: K+V ${fmt(c0.bytes / 2 ** 20, 1)} MiB, ${fmt(c0.flops / 1e9, 3)} GFLOP; ` +
      `roofline ${fmt(c0.bytes / (probe.singleGBps * 1e6), 2)} ms (1 thread), ${
        fmt(c0.bytes / (probe.peakGBps * 1e6), 2)
      } ms (${probe.threads} threads)`,
  );
  const table: string[][] = [header];
  for (const i of idx) {
    const c = cases[i]!, t = timings[i]!;
    const s = t.avgNs / 1e9;
    const roof = c.threads === 1 ? probe.singleGBps : probe.peakGBps;
    const row: Row = {
      group: g,
      impl: c.name,
      threads: c.threads,
      avgMs: t.avgNs / 1e6,
      minMs: t.minNs / 1e6,
      gbps: c.bytes / s / 1e9,
      rooflineGBps: roof,
      fractionOfRoofline: c.bytes / s / 1e9 / roof,
      gflops: c.flops / s / 1e9,
      vsBaseline: base === undefined ? NaN : timings[base]!.avgNs / t.avgNs,
      samples: t.samples,
    };
    rows.push(row);
    table.push([
      row.impl,
      String(row.threads),
      fmt(row.avgMs),
      fmt(row.minMs),
      fmt(row.gbps),
      `${fmt(row.fractionOfRoofline * 100, 1)}%`,
      fmt(row.gflops),
      `${fmt(row.vsBaseline)}×`,
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

if (flags.json !== undefined) {
  await Deno.writeTextFile(
    flags.json,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        quick: QUICK,
        deno: Deno.version,
        cores: navigator.hardwareConcurrency,
        loadavg: load,
        wasmKernel: heap.kernel,
        probe,
        rows,
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`\nwrote ${flags.json}`);
}
