// Copyright 2026 the longctx authors. MIT license.
/**
 * LongHeads vs dense attention, in the same run (issue #4's benchmark).
 *
 * 1. Decode at `heads` × `dim` × {32k, 128k} cached tokens (default Llama-3-8B's
 *    shape: 32 query heads, 8 KV heads, 128 dims): mitata time per step, tokens and
 *    bytes read per step, the roofline time of those bytes, and, for one planted
 *    query, the attention-mass recall and output error against exact attention.
 * 2. Summary-build cost per completed chunk (chunks cached by `append`, so the keys
 *    stand in for the queries: one summary per KV head).
 * 3. Prefill cost growth from 8k to 32k tokens (pipeline prefill in blocks of 512,
 *    real queries, summaries built as chunks complete) for LongHeads vs dense.
 *
 * Synthetic data (seeded): keys, values ~ N(0, 0.6²)/N(0, 1); 4 attention sinks on the
 * low-frequency rotary pairs; a 32-token needle at depth 0.37 planted for the recall
 * query of every KV head group. Pure-TS CPU timings on this machine.
 *
 * Run: `deno run -A bench/long_heads_bench.ts [--quick] [--lengths 32768,131072]
 *       [--prefill 8192,16384,32768] [--dense-prefill-max 16384]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { measure } from "npm:mitata@1.0.34";
import { AttentionPipeline, LongHeads, Rng, Rope, type Tensor, tensor } from "../mod.ts";
import { measureReadBandwidth, rooflineMs } from "./_roofline.ts";

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    lengths: { type: "string" },
    prefill: { type: "string" },
    "dense-prefill-max": { type: "string" },
    heads: { type: "string", default: "32" },
    "kv-heads": { type: "string", default: "8" },
    dim: { type: "string", default: "128" },
    chunk: { type: "string", default: "256" },
    length: { type: "string", default: "4096" },
  },
});
const QUICK = args.quick!;
const H = Number(args.heads), KV = Number(args["kv-heads"]), D = Number(args.dim);
const W = Number(args.chunk), A = Number(args.length);
const G = H / KV;
const lengths = (args.lengths ?? (QUICK ? "16384" : "32768,131072")).split(",").map(Number);
const prefillLengths = (args.prefill ?? (QUICK ? "2048,4096" : "8192,16384,32768"))
  .split(",").map(Number);
const densePrefillMax = Number(args["dense-prefill-max"] ?? (QUICK ? "4096" : "16384"));
const BLOCK = 4096; // tokens generated and appended at a time
const rope = new Rope({ headDim: D, base: 500_000 });

const probe = await measureReadBandwidth({ bytes: 256 * 2 ** 20, runs: 3, threads: 1 });
const bw = Math.max(probe.lineGBps, probe.elementGBps);
console.log(
  `LongHeads bench — ${H} query heads / ${KV} KV heads × ${D} dims, chunk ${W}, ` +
    `attention length ${A} (k = ${A / W}), query-head GQA; f32 KV; ` +
    `single-thread read bandwidth ${bw.toFixed(1)} GB/s (roofline); ` +
    `${navigator.hardwareConcurrency} cores, load ${
      Deno.loadavg().map((x) => x.toFixed(1)).join(" ")
    }`,
);

// --- Synthetic stream ---------------------------------------------------------
/** Unit direction on the 4 lowest-frequency rotary pairs (sinks and queries share it). */
function sinkDirection(rng: Rng, d: number): Float32Array {
  const mu = new Float32Array(d);
  for (let i = d / 2 - 4; i < d / 2; i++) mu[i] = mu[i + d / 2] = rng.normal();
  const n = Math.hypot(...mu);
  for (let i = 0; i < d; i++) mu[i]! /= n;
  return mu;
}

function query(rng: Rng, heads: number, d: number, mu: Float32Array): Tensor<"f32"> {
  const q = new Float32Array(heads * d);
  for (let i = 0; i < q.length; i++) q[i] = 0.6 * rng.normal() + 2 * mu[i % d]!;
  return tensor(q, [1, heads, d], { layout: "thd" });
}

/**
 * Appends `n` tokens of the synthetic stream to every pipeline: sinks at 0…3, a
 * 32-token needle for `finalQuery` (raw, used at position `n`) at depth 0.37.
 */
function fill(
  pipes: AttentionPipeline[],
  n: number,
  rng: Rng,
  mu: Float32Array,
  finalQuery: Tensor<"f32">,
): number {
  const needle = Math.floor(n * 0.37);
  // Post-RoPE group-mean final query per KV head, scaled so each needle logit is 8.5.
  const qPost = rope.apply(finalQuery, n);
  const planted: Float32Array[] = [];
  for (let kh = 0; kh < KV; kh++) {
    const post = new Float32Array(D);
    for (let g = 0; g < G; g++) {
      for (let i = 0; i < D; i++) post[i]! += qPost.data[(kh * G + g) * D + i]! / G;
    }
    const nn = Math.hypot(...post);
    for (let i = 0; i < D; i++) post[i] = (post[i]! / nn) * (8.5 * Math.sqrt(D) / nn);
    planted.push(post);
  }
  const k = new Float32Array(BLOCK * KV * D), v = new Float32Array(BLOCK * KV * D);
  for (let t0 = 0; t0 < n; t0 += BLOCK) {
    const b = Math.min(BLOCK, n - t0);
    for (let i = 0; i < b * KV * D; i++) {
      k[i] = 0.6 * rng.normal();
      v[i] = rng.normal();
    }
    for (let t = t0; t < t0 + b; t++) {
      for (let kh = 0; kh < KV; kh++) {
        const o = ((t - t0) * KV + kh) * D;
        if (t < 4) { for (let i = 0; i < D; i++) k[o + i]! += 28 * mu[i]!; }
        if (t >= needle && t < needle + 32) rope.rotateRow(planted[kh]!, 0, k, o, -t);
      }
    }
    const kt = tensor(k.subarray(0, b * KV * D), [b, KV, D], { layout: "thd" });
    const vt = tensor(v.subarray(0, b * KV * D), [b, KV, D], { layout: "thd" });
    for (const p of pipes) p.append(0, kt, vt);
    Deno.stderr.writeSync(new TextEncoder().encode(`\r  filling ${t0 + b}/${n} tokens`));
  }
  Deno.stderr.writeSync(new TextEncoder().encode("\r" + " ".repeat(40) + "\r"));
  return needle;
}

/** Exact softmax probabilities of the query at position `pos` over a dense pipeline's cache: [H][n]. */
function exactProbs(dense: AttentionPipeline, q: Tensor<"f32">, pos: number): Float64Array[] {
  const n = dense.position(0);
  const qPost = rope.apply(q, pos);
  const store = dense.store;
  const out: Float64Array[] = [];
  for (let h = 0; h < H; h++) {
    const kh = Math.floor(h / G);
    const p = new Float64Array(n);
    let m = -Infinity;
    for (let pg = 0; pg * store.pageSize < n; pg++) {
      const page = store.page(0, kh, pg);
      const rows = Math.min(store.pageSize, n - pg * store.pageSize);
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let i = 0; i < D; i++) s += qPost.data[h * D + i]! * page.keys[r * D + i]!;
        const j = pg * store.pageSize + r;
        p[j] = s / Math.sqrt(D);
        if (p[j]! > m) m = p[j]!;
      }
    }
    let z = 0;
    for (let j = 0; j < n; j++) z += p[j] = Math.exp(p[j]! - m);
    for (let j = 0; j < n; j++) p[j]! /= z;
    out.push(p);
  }
  return out;
}

const fmt = (x: number, d = 2): string => x.toFixed(d);
const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

// --- 1 + 2. Decode -------------------------------------------------------------
const decodeRows: string[][] = [[
  "tokens",
  "method",
  "ms/step (p50)",
  "tokens read/head",
  "bytes read/step",
  "roofline ms",
  "of roofline",
  "mass recall",
  "needle read",
  "max |err|",
]];
const buildRows: string[][] = [[
  "tokens",
  "method",
  "chunks × KV heads",
  "first step ms",
  "build ms/chunk/KV head",
]];
for (const T of lengths) {
  const rng = new Rng(T);
  const mu = sinkDirection(rng, D);
  const finalQ = query(rng, H, D, mu);
  const base = { layers: 1, heads: H, kvHeads: KV, headDim: D, rope };
  const dense = new AttentionPipeline(base);
  const sparse = new AttentionPipeline({
    ...base,
    selector: new LongHeads({ chunkSize: W, attentionLength: A }),
  });
  const shared = new AttentionPipeline({
    ...base,
    selector: new LongHeads({ chunkSize: W, attentionLength: A, gqa: "kv-head" }),
  });
  console.log(`\n[decode ${T}] filling the caches…`);
  const needle = fill([dense, sparse, shared], T, rng, mu, finalQ);
  const step = (p: AttentionPipeline, q: Tensor<"f32">) => {
    const kv = tensor(new Float32Array(KV * D).map(() => 0.6 * rng.normal()), [1, KV, D]);
    return p.attend(0, q, kv, kv);
  };
  // Recall step: the planted query, first call on both (LongHeads builds every summary here).
  const probs = exactProbs(dense, finalQ, T);
  const kv0 = tensor(new Float32Array(KV * D), [1, KV, D]);
  let t0 = performance.now();
  const exact = dense.attend(0, finalQ, kv0, kv0);
  const denseFirst = performance.now() - t0;
  void denseFirst;
  const quality = (p: AttentionPipeline) => {
    t0 = performance.now();
    const approx = p.attend(0, finalQ, kv0, kv0);
    const first = performance.now() - t0;
    let err = 0;
    for (let i = 0; i < exact.out.data.length; i++) {
      err = Math.max(err, Math.abs(exact.out.data[i]! - approx.out.data[i]!));
    }
    let recall = 0, hits = 0;
    for (let h = 0; h < H; h++) {
      const s = p.lastSelection![h]!.spans;
      let m = 0, hit = false;
      for (let i = 0; i < s.length; i += 2) {
        for (let j = s[i]!; j < Math.min(s[i + 1]!, T); j++) m += probs[h]![j]!;
        if (s[i]! <= needle && needle < s[i + 1]!) hit = true;
      }
      recall += m / H;
      if (hit) hits++;
    }
    return { first, err, recall, hits };
  };
  const q1 = quality(sparse), q2 = quality(shared);
  // Timed decode steps.
  const rows: Array<[string, AttentionPipeline, ReturnType<typeof quality> | undefined]> = [
    ["dense", dense, undefined],
    ["LongHeads query-head", sparse, q1],
    ["LongHeads kv-head", shared, q2],
  ];
  const p50: number[] = [];
  for (const [name, p, q] of rows) {
    p.resetStats();
    const s = await measure(() => step(p, query(rng, H, D, mu)), {
      min_samples: QUICK ? 3 : 6,
      min_cpu_time: QUICK ? 100e6 : 500e6,
      warmup_samples: 1,
    });
    const st = p.stats;
    const calls = Math.max(1, st.queries);
    const tokens = st.tokensPerHead.reduce((a, b) => a + b, 0) / H / calls;
    const bytes = st.bytesRead / calls;
    const roof = rooflineMs(bytes, bw);
    p50.push(s.p50 / 1e6);
    decodeRows.push([
      String(T),
      name,
      fmt(s.p50 / 1e6),
      fmt(tokens, 0),
      mib(bytes),
      fmt(roof),
      `${fmt((100 * roof) / (s.p50 / 1e6), 0)}%`,
      q === undefined ? "1.0000" : fmt(q.recall, 4),
      `${q === undefined ? H : q.hits}/${H}`,
      q === undefined ? "0" : q.err.toExponential(2),
    ]);
    Deno.stderr.writeSync(new TextEncoder().encode(`  ${name}: ${fmt(s.p50 / 1e6)} ms/step\n`));
  }
  const chunks = Math.floor(T / W);
  for (const [i, q] of [q1, q2].entries()) {
    buildRows.push([
      String(T),
      rows[i + 1]![0],
      `${chunks} × ${KV}`,
      fmt(q.first),
      fmt((q.first - p50[i + 1]!) / (chunks * KV), 3),
    ]);
  }
}

// --- 3. Prefill growth -----------------------------------------------------------
const PH = 8, PKV = 2, PD = 64, PW = 64, PA = 1024, PBLOCK = 512;
const prefillRows: string[][] = [["tokens", "dense s", "LongHeads s", "LongHeads s / token (µs)"]];
console.log(
  `\n[prefill] ${PH} query heads / ${PKV} KV heads × ${PD} dims, LongHeads chunk ${PW}, length ${PA}, ` +
    `pipeline prefill in blocks of ${PBLOCK}`,
);
for (const T of prefillLengths) {
  const rng = new Rng(7 + T);
  const q = new Float32Array(T * PH * PD), k = new Float32Array(T * PKV * PD);
  const v = new Float32Array(T * PKV * PD);
  for (let i = 0; i < q.length; i++) q[i] = rng.normal();
  for (let i = 0; i < k.length; i++) (k[i] = rng.normal(), v[i] = rng.normal());
  const prope = new Rope({ headDim: PD });
  const base = { layers: 1, heads: PH, kvHeads: PKV, headDim: PD, rope: prope };
  const time = (p: AttentionPipeline, label: string): number => {
    const t0 = performance.now();
    for (let t = 0; t < T; t += PBLOCK) {
      const e = Math.min(T, t + PBLOCK);
      p.attend(
        0,
        tensor(q.subarray(t * PH * PD, e * PH * PD), [e - t, PH, PD]),
        tensor(k.subarray(t * PKV * PD, e * PKV * PD), [e - t, PKV, PD]),
        tensor(v.subarray(t * PKV * PD, e * PKV * PD), [e - t, PKV, PD]),
      );
      Deno.stderr.writeSync(new TextEncoder().encode(`\r  ${label} ${T}: ${e}/${T}`));
    }
    Deno.stderr.writeSync(new TextEncoder().encode("\r" + " ".repeat(40) + "\r"));
    return (performance.now() - t0) / 1000;
  };
  const lhS = time(
    new AttentionPipeline({
      ...base,
      selector: new LongHeads({ chunkSize: PW, attentionLength: PA }),
    }),
    "LongHeads",
  );
  const denseS = T <= densePrefillMax ? time(new AttentionPipeline(base), "dense") : NaN;
  prefillRows.push([
    String(T),
    Number.isNaN(denseS) ? "(skipped)" : fmt(denseS, 1),
    fmt(lhS, 1),
    fmt((lhS / T) * 1e6, 0),
  ]);
}

function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const [i, r] of rows.entries()) {
    console.log(
      r.map((x, c) => (c <= 1 ? x.padEnd(widths[c]!) : x.padStart(widths[c]!))).join("  "),
    );
    if (i === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
  }
}
console.log("\nDecode (one query token per step; recall/needle/error from the planted query):");
table(decodeRows);
console.log(
  "\nSummary build (chunks cached by append: keys stand in for queries, one summary per KV head):",
);
table(buildRows);
console.log("\nPrefill growth:");
table(prefillRows);
console.log(
  "\nroofline ms: bytes read ÷ single-thread read bandwidth; 'of roofline' = roofline ÷ measured." +
    "\nLongHeads re-numbers positions, so its error against exact attention is not zero even on the" +
    "\ntokens it reads. Timings: pure-TS CPU on this machine, not GPU.",
);
