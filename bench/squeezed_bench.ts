// Copyright 2026 the longctx authors. MIT license.
/**
 * Squeezed Attention vs dense attention, in the same run (issue #6's benchmark).
 *
 * 1. Offline clustering time for one head: 32k keys × 128 dims (quick: 8k),
 *    `C = 5%` of the keys, one level and two levels (coarse `C₁ = 1%`).
 * 2. Recall vs budget (quality): one-level and two-level lookup at top-k
 *    budgets, next to the best any selection of as many keys could do (the
 *    exact top-k), and threshold mode calibrated to target sparsities on
 *    held-out queries (the paper's mode), with the fraction it actually read.
 * 3. Decode at 32 query heads / 8 KV heads × 128 dims × {32k, 128k} fixed
 *    tokens + 16 dynamic tokens: time per step, KV and centroid bytes read,
 *    their roofline, attention-mass recall and output error, against dense
 *    attention over the same cache in the same run.
 *
 * Synthetic keys (seeded), as attention sees them (no RoPE): each KV head has
 * 256 topic centres (entries N(0, 1)); the context is a sequence of topic
 * segments (geometric length, mean 16 tokens), each key its segment's centre
 * + N(0, 0.5²) noise; values N(0, 1). A query points at the topics of two
 * random context tokens of its KV head (weights 1 and 0.6) with strength
 * `10/√d` plus N(0, 1) noise, so its attention concentrates on a few
 * segments without being one-hot.
 *
 * Run: `deno run -A bench/squeezed_bench.ts [--quick] [--lengths 32768,131072]
 *       [--iterations 300] [--cache DIR] [--json PATH]`
 *
 * `--cache DIR` saves each decode index with `saveSqueezedIndex` and loads it
 * on later runs (clustering 8 heads × 128k keys takes minutes here).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { measure } from "npm:mitata@1.0.34";
import { denseAttention } from "../attention/dense.ts";
import { hierarchicalKmeans, kmeans } from "../attention/kmeans.ts";
import { type HeadSelection, selectAll } from "../attention/selection.ts";
import { createAttendStats, sparseAttend } from "../attention/sparse_attend.ts";
import type { SelectContext } from "../attention/stages.ts";
import {
  buildSqueezedIndex,
  calibrateSqueezed,
  loadSqueezedIndex,
  saveSqueezedIndex,
  SqueezedAttention,
  squeezedAttention,
  type SqueezedIndex,
  type SqueezedSelectionOptions,
} from "../attention/squeezed.ts";
import type { AttentionState } from "../attention/types.ts";
import { KvStore } from "../kv/kv_store.ts";
import { Rng, selectAxis, type Tensor, tensor } from "../tensor/mod.ts";
import { measureReadBandwidth, rooflineMs } from "./_roofline.ts";

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    lengths: { type: "string" },
    iterations: { type: "string", default: "300" },
    cache: { type: "string" },
    json: { type: "string" },
  },
});
const QUICK = args.quick!;
const H = 32, KV = 8, D = 128, G = H / KV;
const DYNAMIC = 16, OBS = 100;
const ITERATIONS = Number(args.iterations);
const lengths = (args.lengths ?? (QUICK ? "8192" : "32768,131072")).split(",").map(Number);
const STRENGTH = 10;

const probe = await measureReadBandwidth({ bytes: 256 * 2 ** 20, runs: 3, threads: 1 });
const bw = Math.max(probe.lineGBps, probe.elementGBps);
const load = (): string => Deno.loadavg().map((x) => x.toFixed(1)).join(" ");
console.log(
  `Squeezed Attention bench — single-thread read bandwidth ${bw.toFixed(1)} GB/s (roofline); ` +
    `${navigator.hardwareConcurrency} cores, load ${load()}${QUICK ? "; QUICK" : ""}`,
);

// --- Synthetic data -------------------------------------------------------------

interface Topics {
  /** Keys `[n, kvHeads, d]`. */
  key: Tensor<"f32">;
  /** Values `[n, kvHeads, d]`. */
  value: Tensor<"f32">;
  /** Queries `[count, heads, d]` pointing at two topics of their KV head. */
  queries(count: number, heads: number): Tensor<"f32">;
}

function topicContext(n: number, kvHeads: number, d: number, seed: number): Topics {
  const topics = 256, segment = 16, noise = 0.5;
  const rng = new Rng(seed);
  const centre = rng.fillNormal(new Float32Array(kvHeads * topics * d));
  const k = new Float32Array(n * kvHeads * d);
  const topicOf = new Int32Array(n * kvHeads);
  for (let t = 0; t < n;) {
    const len = 1 + Math.floor(-Math.log(1 - rng.uniform()) * segment);
    const tp = new Int32Array(kvHeads).map(() => rng.int(topics));
    for (let i = 0; i < len && t < n; i++, t++) {
      for (let h = 0; h < kvHeads; h++) {
        topicOf[t * kvHeads + h] = tp[h]!;
        const o = (t * kvHeads + h) * d, c = (h * topics + tp[h]!) * d;
        for (let e = 0; e < d; e++) k[o + e] = centre[c + e]! + noise * rng.normal();
      }
    }
  }
  const value = rng.fillNormal(new Float32Array(n * kvHeads * d));
  const a = STRENGTH / Math.sqrt(d);
  return {
    key: tensor(k, [n, kvHeads, d], { layout: "thd" }),
    value: tensor(value, [n, kvHeads, d], { layout: "thd" }),
    queries: (count, heads) => {
      const g = heads / kvHeads;
      const q = new Float32Array(count * heads * d);
      for (let i = 0; i < count; i++) {
        for (let h = 0; h < heads; h++) {
          // Two topics present in the context: those of two random tokens.
          const kh = Math.floor(h / g);
          const t1 = topicOf[rng.int(n) * kvHeads + kh]!, t2 = topicOf[rng.int(n) * kvHeads + kh]!;
          const o = (i * heads + h) * d;
          for (let e = 0; e < d; e++) {
            q[o + e] = a *
                (centre[(kh * topics + t1) * d + e]! + 0.6 * centre[(kh * topics + t2) * d + e]!) +
              rng.normal();
          }
        }
      }
      return tensor(q, [count, heads, d], { layout: "thd" });
    },
  };
}

const fmt = (x: number, digits = 2): string => Number.isFinite(x) ? x.toFixed(digits) : "—";
const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
const tok = (t: number): string => t % 1024 === 0 ? `${t / 1024}k` : String(t);
function progress(s: string): void {
  if (!Deno.stderr.isTerminal()) return;
  Deno.stderr.writeSync(new TextEncoder().encode(`\r${s.padEnd(72)}\r`));
}
function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const [i, r] of rows.entries()) {
    console.log(
      "  " + r.map((x, c) => (c <= 1 ? x.padEnd(widths[c]!) : x.padStart(widths[c]!))).join("  "),
    );
    if (i === 0) console.log("  " + widths.map((w) => "-".repeat(w)).join("  "));
  }
}
const json: Record<string, unknown> = {
  date: new Date().toISOString(),
  quick: QUICK,
  deno: Deno.version.deno,
  bandwidthGBps: bw,
};

// --- 1. Clustering time -----------------------------------------------------------

{
  const n = QUICK ? 8192 : 32768;
  const ctx = topicContext(n, 1, D, 1);
  const points = selectAxis(ctx.key, 1, 0);
  const k = Math.floor(0.05 * n), k1 = Math.floor(0.01 * n);
  console.log(`\n[clustering] one head, ${tok(n)} keys × ${D} dims, load ${load()}`);
  const rows: string[][] = [["what", "clusters", "ms", "iterations", "converged"]];
  let t0 = performance.now();
  const one = kmeans(points, { clusters: k });
  const oneMs = performance.now() - t0;
  rows.push([
    "k-means (k-means++, cosine)",
    String(k),
    fmt(oneMs, 0),
    String(one.iterations),
    String(one.converged),
  ]);
  t0 = performance.now();
  const two = hierarchicalKmeans(points, { clusters: k, coarseClusters: k1 });
  const twoMs = performance.now() - t0;
  rows.push([
    "two-level (fine + coarse)",
    `${k} + ${k1}`,
    fmt(twoMs, 0),
    String(two.fine.iterations),
    String(two.fine.converged),
  ]);
  table(rows);
  json.clustering = { keys: n, headDim: D, clusters: k, coarseClusters: k1, oneMs, twoMs };
}

// --- 2. Recall vs budget ------------------------------------------------------------

/** Exact log-sum-exp of each head's logits over keys [0, n) of `key`, f64. */
function exactLse(query: Tensor, key: Tensor, n: number): Float64Array {
  const [, heads, d] = query.shape as [number, number, number];
  const kvh = key.shape[1]!, g = heads / kvh;
  const out = new Float64Array(heads);
  const s = new Float64Array(n);
  for (let h = 0; h < heads; h++) {
    const kh = Math.floor(h / g);
    let m = -Infinity;
    for (let j = 0; j < n; j++) {
      let x = 0;
      const ko = (j * kvh + kh) * d;
      for (let e = 0; e < d; e++) x += query.data[h * d + e]! * key.data[ko + e]!;
      s[j] = x / Math.sqrt(d);
      if (s[j]! > m) m = s[j]!;
    }
    let z = 0;
    for (let j = 0; j < n; j++) z += Math.exp(s[j]! - m);
    out[h] = m + Math.log(z);
  }
  return out;
}

/** Mass of the `count` most probable keys of head h (the top-k oracle), given its lse. */
function topMass(query: Tensor, key: Tensor, n: number, h: number, lse: number, count: number) {
  const [, heads, d] = query.shape as [number, number, number];
  const kvh = key.shape[1]!, kh = Math.floor(h / (heads / kvh));
  const p = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let x = 0;
    const ko = (j * kvh + kh) * d;
    for (let e = 0; e < d; e++) x += query.data[h * d + e]! * key.data[ko + e]!;
    p[j] = Math.exp(x / Math.sqrt(d) - lse);
  }
  p.sort();
  let m = 0;
  for (let j = n - 1; j >= n - count; j--) m += p[j]!;
  return m;
}

{
  const n = QUICK ? 4096 : 8192, heads = 8, kvHeads = 2, nq = QUICK ? 12 : 32;
  const ctx = topicContext(n, kvHeads, D, 2);
  console.log(
    `\n[recall vs budget] ${
      tok(n)
    } fixed keys, ${heads} query heads / ${kvHeads} KV heads × ${D} dims, ` +
      `${nq} queries, no observation window (recall over the clustered keys), load ${load()}`,
  );
  const index = buildSqueezedIndex([ctx.key], { observationWindow: 0, levels: 2 });
  // One dynamic token after the fixed context (its own key); recall is over the fixed keys.
  const extra = topicContext(1, kvHeads, D, 3);
  const key = concatTokens(ctx.key, extra.key), value = concatTokens(ctx.value, extra.value);
  const queries = Array.from({ length: nq }, () => ctx.queries(1, heads));
  const lse = queries.map((q) => exactLse(q, ctx.key, n));
  const run = (o: SqueezedSelectionOptions): { recall: number; read: number } => {
    let recall = 0, read = 0;
    for (const [i, query] of queries.entries()) {
      const r = squeezedAttention({ query, key, value }, { index, ...o });
      for (let h = 0; h < heads; h++) {
        recall += Math.exp(r.fixedState.lse.data[h]! - lse[i]![h]!);
        read += r.fixedKeysRead[h]!;
      }
    }
    return { recall: recall / (nq * heads), read: read / (nq * heads * n) };
  };
  const oracle = (fraction: number): number => {
    let m = 0;
    for (const [i, query] of queries.entries()) {
      for (let h = 0; h < heads; h++) {
        m += topMass(query, ctx.key, n, h, lse[i]![h]!, Math.round(fraction * n));
      }
    }
    return m / (nq * heads);
  };
  const rows: string[][] = [[
    "mode",
    "target",
    "1-level read",
    "1-level recall",
    "2-level read",
    "2-level recall",
    "top-k oracle (1-level read)",
  ]];
  const recallRows: unknown[] = [];
  for (const budget of [0.025, 0.05, 0.1, 0.2, 0.3]) {
    const a = run({ budget, hierarchical: false }), b = run({ budget });
    const o = oracle(a.read);
    rows.push([
      "top-k budget",
      pct(budget),
      pct(a.read),
      fmt(a.recall, 3),
      pct(b.read),
      fmt(b.recall, 3),
      fmt(o, 3),
    ]);
    recallRows.push({ mode: "budget", budget, one: a, two: b, oracle: o });
    progress(`  budget ${budget}`);
  }
  const calQueries = ctx.queries(100, heads);
  for (const sparsity of [0.8, 0.9, 0.95]) {
    const cal = calibrateSqueezed(index, [calQueries], { sparsity, coarseSparsity: 0.7 });
    const a = run({ threshold: cal.threshold, hierarchical: false });
    const b = run({ calibration: cal });
    const o = oracle(a.read);
    rows.push([
      "calibrated threshold",
      `sparsity ${sparsity} (τ ${cal.threshold.toExponential(1)})`,
      pct(a.read),
      fmt(a.recall, 3),
      pct(b.read),
      fmt(b.recall, 3),
      fmt(o, 3),
    ]);
    recallRows.push({ mode: "threshold", sparsity, one: a, two: b, oracle: o });
    progress(`  sparsity ${sparsity}`);
  }
  progress("");
  table(rows);
  console.log(
    "  read = clustered keys attended / clustered keys; recall = attended share of the exact softmax mass" +
      "\n  over the clustered keys; two-level top-k keeps level-1 clusters up to 4× the budget first;" +
      "\n  two-level threshold mode uses the level-1 threshold at sparsity 0.7 (the authors' percentile_lower).",
  );
  json.recall = { keys: n, heads, kvHeads, headDim: D, queries: nq, rows: recallRows };
}

function concatTokens(a: Tensor, b: Tensor): Tensor<"f32"> {
  const [ta, h, d] = a.shape as [number, number, number];
  const tb = b.shape[0]!;
  const out = new Float32Array((ta + tb) * h * d);
  out.set(a.data as Float32Array, 0);
  out.set(b.data as Float32Array, ta * h * d);
  return tensor(out, [ta + tb, h, d], { layout: "thd" });
}

// --- 3. Decode ------------------------------------------------------------------------

const decodeRows: string[][] = [[
  "tokens",
  "method",
  "ms/step (p50)",
  "× dense",
  "keys read/head",
  "spans/head",
  "KV bytes/step",
  "centroid bytes/step",
  "roofline ms",
  "mass recall",
  "rel. error",
]];
const decodeJson: unknown[] = [];
for (const N of lengths) {
  const T = N + DYNAMIC;
  console.log(
    `\n[decode ${
      tok(N)
    }] ${H} query heads / ${KV} KV heads × ${D} dims, ${N} fixed + ${DYNAMIC} dynamic tokens, load ${load()}`,
  );
  progress("  generating keys");
  const ctx = topicContext(T, KV, D, 10 + N);
  const store = new KvStore({ layers: 1, kvHeads: KV, headDim: D, keyForm: "post-rope" });
  store.append(0, ctx.key, ctx.value);
  const file = args.cache === undefined
    ? undefined
    : join(args.cache, `squeezed_bench_${N}_it${ITERATIONS}.lcsq`);
  let index: SqueezedIndex;
  let buildMs = NaN;
  try {
    if (file === undefined) throw new Error("no cache");
    index = loadSqueezedIndex(await Deno.readFile(file)).index;
    console.log(`  index loaded from ${file}`);
  } catch {
    progress(`  clustering ${KV} heads × ${N - OBS} keys (5% + 1%, ≤ ${ITERATIONS} iterations)`);
    const t0 = performance.now();
    index = buildSqueezedIndex(store, {
      fixedLength: N,
      observationWindow: OBS,
      levels: 2,
      iterations: ITERATIONS,
    });
    buildMs = performance.now() - t0;
    progress("");
    console.log(`  index built in ${fmt(buildMs / 1000, 1)} s (${KV} KV heads, two levels)`);
    if (file !== undefined) {
      await Deno.mkdir(args.cache!, { recursive: true });
      await Deno.writeFile(file, saveSqueezedIndex(index));
      console.log(`  index saved to ${file}`);
    }
  }
  const calibration = calibrateSqueezed(index, [ctx.queries(OBS, H)], { sparsity: 0.9 });
  type Method = { name: string; sq: SqueezedAttention | undefined };
  const sel = (o: SqueezedSelectionOptions): SqueezedAttention =>
    new SqueezedAttention({ ...o, index });
  const methods: Method[] = [
    { name: "dense (sparseAttend, all keys)", sq: undefined },
    { name: "Squeezed 1-level, 25% budget", sq: sel({ budget: 0.25, hierarchical: false }) },
    { name: "Squeezed 1-level, 10% budget", sq: sel({ budget: 0.1, hierarchical: false }) },
    { name: "Squeezed 2-level, 10% budget", sq: sel({ budget: 0.1 }) },
    {
      name: "Squeezed 1-level, threshold (sparsity 0.9)",
      sq: sel({ threshold: calibration.threshold, hierarchical: false }),
    },
  ];
  const qctx = new Float32Array(G * D);
  let lastSels: HeadSelection[] = [];
  const step = (m: Method, q: Tensor, stats?: ReturnType<typeof createAttendStats>) => {
    const sels = new Array<HeadSelection>(H);
    lastSels = sels;
    for (let kh = 0; kh < KV; kh++) {
      let s: HeadSelection;
      if (m.sq === undefined) s = selectAll(T);
      else {
        qctx.set(q.data.subarray(kh * G * D, (kh + 1) * G * D) as Float32Array);
        const c: SelectContext = {
          store,
          layer: 0,
          kvHead: kh,
          group: G,
          length: T,
          queryPosition: T - 1,
          query: qctx,
          rope: undefined,
          callTokens: 1,
          callStart: T - 1,
        };
        s = m.sq.select(c) as HeadSelection;
      }
      for (let g = 0; g < G; g++) sels[kh * G + g] = s;
    }
    return sparseAttend(q, store, [sels], {
      layer: 0,
      queryPositions: [T - 1],
      ...(stats !== undefined ? { stats } : {}),
    });
  };
  // Quality over a few queries: recall = exp(lse_selected − lse_all), error vs dense.
  const nq = QUICK ? 4 : 8;
  const qualityQueries = Array.from({ length: nq }, () => ctx.queries(1, H));
  const dense = qualityQueries.map((q) => step(methods[0]!, q));
  const quality = (m: Method): { recall: number; err: number } => {
    let recall = 0, err = 0;
    for (const [i, q] of qualityQueries.entries()) {
      const got: AttentionState = step(m, q), want = dense[i]!;
      let num = 0, den = 0;
      for (let h = 0; h < H; h++) {
        recall += Math.exp(got.lse.data[h]! - want.lse.data[h]!) / (nq * H);
        for (let e = 0; e < D; e++) {
          num += (got.out.data[h * D + e]! - want.out.data[h * D + e]!) ** 2;
          den += want.out.data[h * D + e]! ** 2;
        }
      }
      err += Math.sqrt(num / den) / nq;
    }
    return { recall, err };
  };
  // The tensor baseline: denseAttention on [T, KV, D] (what attention_bench times).
  const timingQuery = ctx.queries(1, H);
  const input = { query: timingQuery, key: ctx.key, value: ctx.value };
  const check = denseAttention(input);
  const viaStore = step(methods[0]!, timingQuery);
  let maxDiff = 0;
  for (let i = 0; i < check.out.data.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(check.out.data[i]! - viaStore.out.data[i]!));
  }
  console.log(`  dense via the store vs denseAttention: max |Δ| = ${maxDiff.toExponential(2)}`);
  const sample = { min_samples: QUICK ? 3 : 6, min_cpu_time: QUICK ? 100e6 : 500e6 };
  const base = await measure(() => denseAttention(input), { ...sample, warmup_samples: 1 });
  const baseMs = base.p50 / 1e6;
  decodeRows.push([
    tok(N),
    "denseAttention (tensors)",
    fmt(baseMs),
    "1.00×",
    String(T),
    "1",
    mib(2 * T * KV * D * 4),
    "0",
    fmt(rooflineMs(2 * T * KV * D * 4, bw)),
    "1.0000",
    "0",
  ]);
  decodeJson.push({ tokens: N, method: "denseAttention (tensors)", msP50: baseMs });
  for (const m of methods) {
    progress(`  ${m.name}`);
    const q = quality(m);
    m.sq?.resetStats();
    const stats = createAttendStats(H);
    let calls = 0;
    const s = await measure(() => {
      calls++;
      return step(m, timingQuery, stats);
    }, { ...sample, warmup_samples: 1 });
    const ms = s.p50 / 1e6;
    const kvBytes = stats.bytesRead / calls;
    const centroidBytes = m.sq === undefined ? 0 : (m.sq.stats.centroidsScored * D * 4) / calls;
    const keys = stats.tokensPerHead[0]! / calls;
    const spans = lastSels.reduce((a, sl) => a + sl.spans.length / 2, 0) / H;
    decodeRows.push([
      tok(N),
      m.name,
      fmt(ms),
      `${fmt(baseMs / ms)}×`,
      fmt(keys, 0),
      fmt(spans, 0),
      mib(kvBytes),
      mib(centroidBytes),
      fmt(rooflineMs(kvBytes + centroidBytes, bw)),
      fmt(q.recall, 4),
      q.err.toExponential(2),
    ]);
    decodeJson.push({
      tokens: N,
      method: m.name,
      msP50: ms,
      keysPerHead: keys,
      spansPerHead: spans,
      kvBytes,
      centroidBytes,
      recall: q.recall,
      relError: q.err,
      buildMs,
    });
  }
  progress("");
  table([decodeRows[0]!, ...decodeRows.filter((r) => r[0] === tok(N))]);
}
console.log(
  "\nDecode (one query token per step; recall and error averaged over held-out queries):",
);
table(decodeRows);
console.log(
  "  keys read/head: fixed (kept clusters + 100-token observation window) + 16 dynamic; bytes: f32 K+V rows" +
    "\n  read by the attend kernel, and centroids scored by the lookup; roofline ms = those bytes ÷ read bandwidth." +
    "\n  Squeezed step = centroid lookup + selection + sparse attend for 8 KV heads; pure-TS CPU, one thread.",
);
json.decode = decodeJson;
if (args.json !== undefined) {
  await Deno.writeTextFile(args.json, JSON.stringify(json, null, 2) + "\n");
  console.log(`\nwrote ${args.json}`);
}
