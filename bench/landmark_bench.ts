// Copyright 2026 the longctx authors. MIT license.

/**
 * Landmark Attention decode vs dense decode: one query token over a long KV
 * cache, 32 query heads × 128 dims, blocks of 64 (63 content tokens + the
 * landmark, the LLaMA fine-tune's setting), k = 4 retrieved blocks.
 *
 * ```sh
 * deno run -A bench/landmark_bench.ts                 # 32k and 128k tokens, kvHeads 8
 * deno run -A bench/landmark_bench.ts --quick         # 32k only, few samples
 * deno run -A bench/landmark_bench.ts --kv-heads 32   # MHA (the paper's setting; 4 GiB of f32 K+V at 128k)
 * deno run -A bench/landmark_bench.ts --json bench/results/landmark.json
 * ```
 *
 * Variants per cache length (each checked before it is timed):
 *
 * | variant | reads |
 * | --- | --- |
 * | `denseAttention` (baseline) | every K and V row once, from contiguous `[tokens, kvHeads, headDim]` |
 * | dense `sparseAttend` over the KV store | the same rows, through the pages |
 * | grouped softmax, fused (`k ≥ blocks`) | every row once: the trained rule without retrieval |
 * | landmark retrieval k=4, `gqa: "kv-head"` | landmark keys (scoring) + 4 blocks + the current block per KV head |
 * | landmark retrieval k=4, `gqa: "query-head"` | landmark keys + 4 blocks + the current block per query head |
 *
 * "bytes read" counts K/V bytes the kernel reads from the cache (and, for
 * retrieval, the landmark keys scored, f32); the roofline column is those
 * bytes at the read bandwidth measured in the same process. The query is the
 * cache's last token; at 32k and 128k it is a landmark, so its current block
 * holds 63 content tokens (the largest local part a decode step reads).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { bench, group, measure, run, summary } from "npm:mitata@1.0.34";
import { denseAttention } from "../attention/dense.ts";
import { selectAll } from "../attention/selection.ts";
import { createAttendStats, sparseAttend } from "../attention/sparse_attend.ts";
import {
  landmarkAttend,
  landmarkFusedAttention,
  type LandmarkGqa,
  LandmarkRetrieval,
} from "../attention/landmark.ts";
import type { Selection } from "../attention/selection.ts";
import { KvStore } from "../kv/kv_store.ts";
import { Rope } from "../positional/rope.ts";
import { Rng, type Tensor, zeros } from "../tensor/mod.ts";
import { measureReadBandwidth } from "./_roofline.ts";

const args = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    "kv-heads": { type: "string", default: "8" },
    json: { type: "string" },
  },
});
const QUICK = args.values.quick;
const HEADS = 32, D = 128, BLOCK_SIZE = 63, TOP_K = 4;
const KV = Number(args.values["kv-heads"]);
if (!Number.isInteger(KV) || KV < 1 || HEADS % KV !== 0) {
  throw new RangeError(`Cannot run bench: --kv-heads must divide ${HEADS}, got ${KV}`);
}
const LENGTHS = QUICK ? [32768] : [32768, 131072];
const TOLERANCE = 1e-3;

interface Case {
  group: string;
  name: string;
  fn: () => unknown;
  baseline: boolean;
  /** Bytes read per call. */
  bytes: number;
}
const cases: Case[] = [];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function verify(label: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  const diff = maxAbsDiff(got, want);
  const ok = got.length === want.length && diff <= TOLERANCE;
  console.log(`  ${ok ? "ok  " : "FAIL"} ${label}: max |Δ| = ${diff.toExponential(2)}`);
  if (!ok) throw new Error(`Cannot run bench: ${label} differs by ${diff}`);
}

const label = (t: number): string => `${t / 1024}k`;

console.log("measuring read bandwidth (256 MiB, best of 5, 1 thread)…");
const probe = await measureReadBandwidth({ threads: 1 });

for (const T of LENGTHS) {
  const name = `decode heads=${HEADS} kvHeads=${KV} headDim=${D} tokens=${label(T)} block=${
    BLOCK_SIZE + 1
  } k=${TOP_K}`;
  console.log(`setting up ${name}`);
  const rng = new Rng(T);
  const rope = new Rope({ headDim: D });
  // Post-RoPE keys at positions 0 … T−1 and values, [T, KV, D]; uniform fill is fast at 1 GiB.
  const key = zeros("f32", [T, KV, D], { layout: "thd" });
  const value = zeros("f32", [T, KV, D], { layout: "thd" });
  rng.fillUniform(key.data, -1, 1);
  rng.fillUniform(value.data, -1, 1);
  const raw = zeros("f32", [1, HEADS, D], { layout: "thd" });
  rng.fillUniform(raw.data, -1, 1);
  const query = rope.apply(raw, T - 1); // rotated, for the tensor kernels
  const store = new KvStore({ layers: 1, kvHeads: KV, headDim: D, keyForm: "post-rope" });
  for (let t0 = 0; t0 < T; t0 += 8192) {
    const t1 = Math.min(T, t0 + 8192);
    const view = (x: Tensor<"f32">): Tensor<"f32"> => ({
      ...x,
      shape: [t1 - t0, KV, D],
      offset: t0 * KV * D,
    });
    store.append(0, rope.apply(view(key), t0), view(value), t0); // rope.apply copies: raw → post-RoPE
  }
  rope.applyInto(key, 0);
  const opts = { layer: 0, queryPositions: [T - 1], rope };

  const want = denseAttention({ query, key, value }).out.data;
  const all = selectAll(T);
  const allSel: Selection[] = [Array(HEADS).fill(all)];
  verify(
    "dense sparseAttend over the store",
    sparseAttend(raw, store, allSel, opts).out.data,
    want,
  );

  const nb = Math.floor((T - 1) / (BLOCK_SIZE + 1));
  const fusedWant = landmarkFusedAttention({ query, key, value }, { blockSize: BLOCK_SIZE }).out
    .data;
  // Retrieval with k ≥ blocks reproduces the fused grouped softmax (the oracle), at full scale.
  const everything = new LandmarkRetrieval({ blockSize: BLOCK_SIZE, topK: nb });
  const allBlocks = everything.selectChunk({ store, layer: 0, query: raw, start: T - 1, rope });
  verify(
    "retrieval with k ≥ blocks vs fused grouped softmax",
    landmarkAttend(raw, store, allBlocks, opts).out.data,
    fusedWant,
  );

  const denseBytes = 2 * T * KV * D * 4;
  const add = (n: string, fn: () => unknown, bytes: number, baseline = false) =>
    cases.push({ group: name, name: n, fn, baseline, bytes });
  add("denseAttention", () => denseAttention({ query, key, value }), denseBytes, true);
  add("dense sparseAttend (store)", () => sparseAttend(raw, store, allSel, opts), denseBytes);
  add(
    "grouped softmax, fused (k ≥ blocks)",
    () => landmarkFusedAttention({ query, key, value }, { blockSize: BLOCK_SIZE }),
    denseBytes,
  );
  for (const gqa of ["kv-head", "query-head"] as LandmarkGqa[]) {
    const lr = new LandmarkRetrieval({ blockSize: BLOCK_SIZE, topK: TOP_K, gqa });
    const step = () => {
      const sels = lr.selectChunk({ store, layer: 0, query: raw, start: T - 1, rope });
      return landmarkAttend(raw, store, sels, opts);
    };
    // Warm the landmark key cache (built once per block, as blocks complete), then count bytes.
    const sels = lr.selectChunk({ store, layer: 0, query: raw, start: T - 1, rope });
    const stats = createAttendStats(HEADS);
    const got = landmarkAttend(raw, store, sels, { ...opts, stats });
    const scoreBytes = nb * KV * D * 4;
    const bytes = stats.bytesRead + scoreBytes;
    const tokens = stats.tokensPerHead[0]!;
    console.log(
      `  landmark k=${TOP_K} ${gqa}: ${tokens} tokens per head, ${
        (bytes / 2 ** 20).toFixed(2)
      } MiB read (${(stats.bytesRead / 2 ** 20).toFixed(2)} attend + ${
        (scoreBytes / 2 ** 20).toFixed(2)
      } landmark keys) vs dense ${(denseBytes / 2 ** 20).toFixed(0)} MiB; cosine to fused ${
        cosine(got.out.data, fusedWant).toFixed(4)
      } (random keys: gates carry no content)`,
    );
    add(`landmark retrieval k=${TOP_K} (${gqa})`, step, bytes);
  }
  const r = new LandmarkRetrieval({ blockSize: BLOCK_SIZE, topK: TOP_K }).residency(store);
  console.log(
    `  offloading view: device ${(r.deviceBytes / 2 ** 20).toFixed(2)} MiB (landmark keys ${
      (r.landmarkKeyBytes / 2 ** 20).toFixed(2)
    } + local ${(r.localBytes / 2 ** 20).toFixed(2)}) of ${
      (r.totalBytes / 2 ** 20).toFixed(0)
    } MiB; fetch per set ${(r.fetchBytesPerSet / 2 ** 10).toFixed(0)} KiB per KV head`,
  );
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! ** 2;
    nb += b[i]! ** 2;
  }
  return dot / Math.sqrt(na * nb);
}

// ---------------------------------------------------------------------------
// Timing.

const timings: { avgNs: number; minNs: number; samples: number }[] = [];
if (QUICK) {
  for (const c of cases) {
    const s = await measure(c.fn, { min_samples: 4, min_cpu_time: 300e6, warmup_samples: 1 });
    timings.push({ avgNs: s.avg, minNs: s.min, samples: s.samples.length });
    console.log(`  ${c.name}: ${(s.avg / 1e6).toFixed(3)} ms/iter`);
  }
} else {
  for (const g of [...new Set(cases.map((c) => c.group))]) {
    group(g, () => {
      summary(() => {
        for (const c of cases.filter((c) => c.group === g)) {
          bench(c.name, c.fn).baseline(c.baseline);
        }
      });
    });
  }
  const { benchmarks } = await run();
  benchmarks.forEach((trial, i) => {
    const stats = trial.runs[0]?.stats;
    if (trial.alias !== cases[i]!.name || stats === undefined) {
      throw new Error(`Cannot summarize bench: trial ${i} (${trial.alias}) has no stats`);
    }
    timings.push({ avgNs: stats.avg, minNs: stats.min, samples: stats.samples.length });
  });
}

// ---------------------------------------------------------------------------
// Table.

const fmt = (x: number, digits = 2): string => Number.isFinite(x) ? x.toFixed(digits) : "—";
console.log();
console.log(
  `read bandwidth (1 thread, cache lines): ${
    fmt(probe.lineGBps, 1)
  } GB/s; CPU: ${navigator.hardwareConcurrency} logical cores; Deno ${Deno.version.deno}` +
    (QUICK ? "; QUICK mode (few samples)" : ""),
);
const rows: Record<string, unknown>[] = [];
for (const g of [...new Set(cases.map((c) => c.group))]) {
  const idx = cases.flatMap((c, i) => c.group === g ? [i] : []);
  const base = idx.find((i) => cases[i]!.baseline)!;
  console.log();
  console.log(g);
  const header = [
    "impl",
    "avg ms",
    "min ms",
    "MiB read",
    "roofline ms",
    "× dense (time)",
    "÷ dense (bytes)",
  ];
  const table = [header];
  for (const i of idx) {
    const c = cases[i]!, t = timings[i]!;
    const row = {
      group: g,
      impl: c.name,
      avgMs: t.avgNs / 1e6,
      minMs: t.minNs / 1e6,
      mibRead: c.bytes / 2 ** 20,
      rooflineMs: c.bytes / (probe.lineGBps * 1e6),
      speedup: timings[base]!.avgNs / t.avgNs,
      byteRatio: cases[base]!.bytes / c.bytes,
      samples: t.samples,
    };
    rows.push(row);
    table.push([
      row.impl,
      fmt(row.avgMs, 3),
      fmt(row.minMs, 3),
      fmt(row.mibRead, 2),
      fmt(row.rooflineMs, 3),
      `${fmt(row.speedup, 1)}×`,
      `${fmt(row.byteRatio, 1)}×`,
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

if (args.values.json !== undefined) {
  await Deno.writeTextFile(
    args.values.json,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        quick: QUICK,
        kvHeads: KV,
        deno: Deno.version,
        probe,
        rows,
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`\nwrote ${args.values.json}`);
}
