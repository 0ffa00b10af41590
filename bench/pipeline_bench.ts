// Copyright 2026 the longctx authors. MIT license.
/**
 * Whole-model decode through composed pipelines (issue #3's benchmark): every layer of a
 * Llama-3-8B-shaped attention stack (32 layers, 32 query heads, 8 KV heads, 128 dims) at 32k
 * cached tokens, one decode step = one `attend` per layer.
 *
 * Configurations, same run: dense; StreamingLLM sinks 4 + window 1024; DuoAttention at 50% and
 * 75% sparsity with the published Llama-3-8B-Instruct-Gradient-1048k gate pattern
 * (`../shared/data/duo_attention_patterns/`, sha256-checked; skipped with a message when absent),
 * streaming heads sinks 64 + recent 256. Each row: ms per decode step (mitata), tokens read per
 * query head, bytes read per step, KV bytes held, speed-up over dense beside the bytes ratio, and
 * the fraction of the single-thread read-bandwidth roofline.
 *
 * Synthetic keys and values (seeded N(0, 1); the same block is appended to every layer, which
 * changes no cost). Pure-TS CPU timings, one thread.
 *
 * Run: `deno run -A bench/pipeline_bench.ts [--quick] [--tokens 32768] [--layers 32]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { measure } from "npm:mitata@1.0.34";
import {
  AttentionPipeline,
  binarizeDuoGates,
  DuoAttention,
  parseDuoPattern,
  Rng,
  Rope,
  type Router,
  SinkWindow,
  StreamingLlm,
  type Tensor,
  tensor,
} from "../mod.ts";
import { measureReadBandwidth, rooflineMs } from "./_roofline.ts";

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    tokens: { type: "string" },
    layers: { type: "string", default: "32" },
  },
});
const QUICK = args.quick!;
const T = Number(args.tokens ?? (QUICK ? "8192" : "32768"));
const L = Number(args.layers), H = 32, KV = 8, D = 128;
const PATTERN = "Llama-3-8B-Instruct-Gradient-1048k";
const patternDir = new URL(
  `../../shared/data/duo_attention_patterns/${PATTERN}/`,
  import.meta.url,
);

async function sha256(bytes: Uint8Array): Promise<string> {
  const h = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(h)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The published gates, sha256-checked against SHA256SUMS; undefined (with a message) when absent. */
async function loadPattern(): Promise<ReturnType<typeof parseDuoPattern> | undefined> {
  try {
    const tsv = await Deno.readFile(new URL("full_attention_heads.tsv", patternDir));
    const sums = await Deno.readTextFile(new URL("../SHA256SUMS", patternDir));
    const want = sums.split("\n").find((l) => l.includes(`${PATTERN}/full_attention_heads.tsv`));
    if (want !== undefined && !want.startsWith(await sha256(tsv))) {
      throw new Error(`sha256 mismatch for ${PATTERN}/full_attention_heads.tsv`);
    }
    const config = await Deno.readTextFile(new URL("config.json", patternDir));
    return parseDuoPattern(new TextDecoder().decode(tsv), { config });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      console.log(`(DuoAttention rows skipped: ${patternDir.pathname} is absent)`);
      return undefined;
    }
    throw e;
  }
}

const probe = await measureReadBandwidth({ bytes: 256 * 2 ** 20, runs: 3, threads: 1 });
const bw = Math.max(probe.lineGBps, probe.elementGBps);
console.log(
  `pipeline bench — ${L} layers × ${H} query heads / ${KV} KV heads × ${D} dims, ${T} cached tokens, ` +
    `f32 KV; single-thread read bandwidth ${bw.toFixed(1)} GB/s (roofline); ` +
    `${navigator.hardwareConcurrency} cores, load ${
      Deno.loadavg().map((x) => x.toFixed(1)).join(" ")
    }`,
);

const rope = new Rope({ headDim: D, base: 500_000 });
const base = { layers: L, heads: H, kvHeads: KV, headDim: D, rope };
interface Config {
  name: string;
  make: () => AttentionPipeline;
}
const configs: Config[] = [
  { name: "dense", make: () => new AttentionPipeline(base) },
  {
    name: "StreamingLLM 4+1024",
    make: () =>
      new AttentionPipeline({
        ...base,
        selector: new StreamingLlm({ sinks: 4, window: 1024 }),
        policy: new SinkWindow({ sinks: 4, window: 1024 }),
      }),
  },
];
const pattern = await loadPattern();
if (pattern !== undefined) {
  if (pattern.layers < L || pattern.kvHeads !== KV) {
    throw new RangeError(
      `pattern ${PATTERN} is ${pattern.layers}×${pattern.kvHeads}, the bench needs ${L}×${KV}`,
    );
  }
  for (const sparsity of [0.5, 0.75]) {
    const mask = binarizeDuoGates(pattern, { sparsity });
    // First L layers of the mask (all 32 by default).
    const rows = Array.from(
      { length: L },
      (_, l) => Array.from({ length: KV }, (_, h) => mask.retrieval[l * KV + h] === 1),
    );
    const streaming = rows.flat().filter((r) => !r).length;
    configs.push({
      name: `DuoAttention ${sparsity * 100}% (${streaming}/${L * KV} streaming)`,
      make: () =>
        new AttentionPipeline({ ...base, router: new DuoAttention({ retrieval: rows }) as Router }),
    });
  }
}

const rng = new Rng(2026);
const BLOCK = 2048;
const kb = new Float32Array(BLOCK * KV * D), vb = new Float32Array(BLOCK * KV * D);
function fill(p: AttentionPipeline): void {
  for (let t0 = 0; t0 < T; t0 += BLOCK) {
    const b = Math.min(BLOCK, T - t0);
    for (let i = 0; i < b * KV * D; i++) (kb[i] = rng.normal(), vb[i] = rng.normal());
    const k = tensor(kb.subarray(0, b * KV * D), [b, KV, D]);
    const v = tensor(vb.subarray(0, b * KV * D), [b, KV, D]);
    for (let l = 0; l < L; l++) p.append(l, k, v);
    Deno.stderr.writeSync(new TextEncoder().encode(`\r  filling ${t0 + b}/${T}`));
  }
  Deno.stderr.writeSync(new TextEncoder().encode("\r" + " ".repeat(30) + "\r"));
}
const q: Tensor<"f32"> = tensor(new Float32Array(H * D).map(() => rng.normal()), [1, H, D]);
const k1: Tensor<"f32"> = tensor(new Float32Array(KV * D).map(() => rng.normal()), [1, KV, D]);
function step(p: AttentionPipeline): void {
  for (let l = 0; l < L; l++) p.attend(l, q, k1, k1);
}

const rows: string[][] = [[
  "configuration",
  "ms/step (p50)",
  "tokens read/head",
  "bytes read/step",
  "KV held",
  "speed-up",
  "bytes ratio",
  "of roofline",
]];
let denseMs = NaN, denseBytes = NaN;
for (const c of configs) {
  console.log(`[${c.name}]`);
  let p: AttentionPipeline | undefined = c.make();
  fill(p);
  step(p); // warm-up
  p.resetStats();
  const s = await measure(() => step(p!), {
    min_samples: QUICK ? 2 : 4,
    min_cpu_time: QUICK ? 100e6 : 500e6,
    warmup_samples: 0,
  });
  const st = p.stats;
  const calls = st.queries / L; // decode steps
  const tokens = st.tokensPerHead.reduce((a, b) => a + b, 0) / (H * L * calls);
  const bytes = st.bytesRead / calls;
  const ms = s.p50 / 1e6;
  if (c.name === "dense") (denseMs = ms, denseBytes = bytes);
  rows.push([
    c.name,
    ms.toFixed(1),
    tokens.toFixed(0),
    `${(bytes / 2 ** 20).toFixed(0)} MiB`,
    `${(p.bytesHeld() / 2 ** 20).toFixed(0)} MiB`,
    `${(denseMs / ms).toFixed(2)}×`,
    `${(denseBytes / bytes).toFixed(2)}×`,
    `${((100 * rooflineMs(bytes, bw)) / ms).toFixed(0)}%`,
  ]);
  console.log(`  ${ms.toFixed(1)} ms/step`);
  p = undefined; // release before the next configuration is filled
}

const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
console.log();
for (const [i, r] of rows.entries()) {
  console.log(
    r.map((x, c) => (c === 0 ? x.padEnd(widths[c]!) : x.padStart(widths[c]!))).join("  "),
  );
  if (i === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
}
console.log(
  "\nspeed-up: dense ms ÷ configuration ms; bytes ratio: dense bytes read ÷ configuration bytes read." +
    "\nPure-TS CPU timings on this machine (one thread), not GPU.",
);
