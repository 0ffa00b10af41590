// Copyright 2026 the longctx authors. MIT license.

/**
 * Tokens per second of the model (`model/llama.ts`) with the dense attention
 * pipeline, for prefill and decode on the real stories260K and tinystories-1k
 * checkpoints, against a baseline measured in the same run: a direct
 * transcription of llama2.c's `run.c` forward (`model/_reference.ts`: one
 * token at a time, per-token matrix-vector products, a naive attention loop
 * over a flat KV cache).
 *
 * ```sh
 * deno run -A bench/model_bench.ts                                  # prints the table
 * deno run -A bench/model_bench.ts --out bench/results/model_bench  # also writes .md and .json
 * ```
 *
 * Before timing, each model's logits are checked against the baseline's on
 * the same tokens (max |Δ| ≤ 1e-3). Decode at a long context grows the cache by
 * the decoded tokens on every sample; the table gives the context range.
 *
 * @module
 */

import { measure } from "npm:mitata@1.0.34";
import { parseArgs } from "node:util";
import { parseCheckpoint } from "../model/checkpoint.ts";
import { Llama } from "../model/llama.ts";
import { Tokenizer } from "../model/tokenizer.ts";
import { splitStories, tokenizeStories } from "../model/perplexity.ts";
import { ReferenceLlama } from "../model/_reference.ts";
import { readChecked, sharedPath } from "../model/_files.ts";

const { values } = parseArgs({ args: Deno.args, options: { out: { type: "string" } } });

const tok = Tokenizer.parse(
  (await readChecked(sharedPath("models/stories260K/tok512.bin"))).bytes,
  { vocabSize: 512 },
);
const text = new TextDecoder().decode(
  (await readChecked(sharedPath("data/tinystories/tinystories_validation_first1000.txt"))).bytes,
);
const stream = Array.from(tokenizeStories(tok, splitStories(text), 4096));

interface Row {
  group: string;
  name: string;
  baseline: boolean;
  /** Tokens processed per timed call. */
  tokens: number;
  /** Context at the first and last timed call. */
  context: string;
  avgMs: number;
  p50Ms: number;
  samples: number;
  tokensPerSecond: number;
}

const rows: Row[] = [];
const BASELINE = "run.c-style reference (per-token matvec, naive attention loop)";

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function time(
  group: string,
  name: string,
  tokens: number,
  fn: () => unknown,
  context: () => string,
  baseline = false,
): Promise<void> {
  const before = context();
  const s = await measure(fn, { min_samples: 5, max_samples: 40, min_cpu_time: 1e9 });
  const ctx = `${before}${context() === before ? "" : `…${context()}`}`;
  const row = {
    group,
    name,
    baseline,
    tokens,
    context: ctx,
    avgMs: s.avg / 1e6,
    p50Ms: s.p50 / 1e6,
    samples: s.samples.length,
    tokensPerSecond: tokens / (s.avg / 1e9),
  };
  rows.push(row);
  console.log(
    `  ${name}: ${row.avgMs.toFixed(2)} ms/iter, ${
      row.tokensPerSecond.toFixed(0)
    } tokens/s (${row.samples} samples, context ${ctx})`,
  );
}

for (
  const spec of [
    { file: "models/stories260K/stories260K.bin", label: "stories260K", prefill: 512, at: 2048 },
    {
      file: "models/tinystories-1k/tinystories1k.bin",
      label: "tinystories-1k",
      prefill: 1024,
      at: 2048,
    },
  ]
) {
  const ckpt = parseCheckpoint((await readChecked(sharedPath(spec.file))).bytes);
  const c = ckpt.config;
  console.log(
    `${spec.label}: dim ${c.dim}, layers ${c.layers}, heads ${c.heads}/${c.kvHeads}, head dim ${c.headDim}`,
  );
  const model = new Llama(ckpt);
  const ref = new ReferenceLlama(ckpt, spec.at + 1024);

  // Check: logits of every token agree with the baseline.
  const check = stream.slice(0, 64);
  ref.reset();
  const want = new Float32Array(64 * c.vocabSize);
  check.forEach((t, i) => want.set(ref.forward(t), i * c.vocabSize));
  const got = new Float32Array(64 * c.vocabSize);
  model.reset();
  model.forward(check, {
    onLogits: (l, r, s) => got.set(l.subarray(0, r * c.vocabSize), s * c.vocabSize),
  });
  const diff = maxDiff(got, want);
  console.log(`  check: max |Δ logits| vs reference over 64 tokens = ${diff.toExponential(2)}`);
  if (!(diff <= 1e-3)) throw new Error(`Cannot run bench: model differs from reference by ${diff}`);

  // Prefill: the whole prompt from an empty cache.
  const prompt = stream.slice(0, spec.prefill);
  const g1 = `${spec.label} prefill ${spec.prefill} tokens`;
  console.log(g1);
  await time(
    g1,
    BASELINE,
    spec.prefill,
    () => {
      ref.reset();
      for (const t of prompt) ref.forward(t);
    },
    () => "0",
    true,
  );
  await time(g1, "Llama, dense pipeline, chunked prefill (256)", spec.prefill, () => {
    model.reset();
    model.forward(prompt);
  }, () => "0");
  await time(g1, "Llama, dense pipeline, one token per call", spec.prefill, () => {
    model.reset();
    for (const t of prompt) model.forward([t]);
  }, () => "0");

  // Decode from an empty cache: generation of 256 tokens, one call each.
  const g2 = `${spec.label} decode 256 tokens from an empty cache`;
  console.log(g2);
  const gen = stream.slice(0, 256);
  await time(
    g2,
    BASELINE,
    256,
    () => {
      ref.reset();
      for (const t of gen) ref.forward(t);
    },
    () => "0",
    true,
  );
  await time(g2, "Llama, dense pipeline", 256, () => {
    model.reset();
    for (const t of gen) model.forward([t]);
  }, () => "0");

  // Decode at a long context: prefill once (untimed), then time 16 decode steps per sample.
  const g3 = `${spec.label} decode 16 tokens at context ${spec.at}+`;
  console.log(g3);
  const long = stream.slice(0, spec.at);
  ref.reset();
  for (const t of long) ref.forward(t);
  let k = 0;
  await time(
    g3,
    BASELINE,
    16,
    () => {
      if (ref.position + 16 > ref.capacity) throw new Error("reference cache full");
      for (let i = 0; i < 16; i++) ref.forward(stream[(k++) % stream.length]!);
    },
    () => String(ref.position),
    true,
  );
  model.reset();
  model.forward(long);
  k = 0;
  await time(g3, "Llama, dense pipeline", 16, () => {
    for (let i = 0; i < 16; i++) model.forward([stream[(k++) % stream.length]!]);
  }, () => String(model.position));
}

// ---------------------------------------------------------------------------

const lines = [
  "| group | variant | context | ms / iter | tokens/s | vs baseline |",
  "| --- | --- | --- | ---: | ---: | ---: |",
];
for (const r of rows) {
  const base = rows.find((x) => x.group === r.group && x.baseline)!;
  lines.push(
    `| ${r.group} | ${r.name} | ${r.context} | ${r.avgMs.toFixed(2)} | ${
      r.tokensPerSecond.toFixed(0)
    } | ${(r.tokensPerSecond / base.tokensPerSecond).toFixed(2)}× |`,
  );
}
const table = lines.join("\n") + "\n";
console.log();
console.log(table);

const load = Deno.loadavg().map((x) => x.toFixed(2)).join(", ");
console.log(`load average at the end (1, 5, 15 min): ${load}`);

if (values.out !== undefined) {
  const date = new Date().toISOString();
  await Deno.writeTextFile(
    `${values.out}.json`,
    JSON.stringify({ date, deno: Deno.version.deno, v8: Deno.version.v8, load, rows }, null, 1) +
      "\n",
  );
  await Deno.writeTextFile(
    `${values.out}.md`,
    `# Model forward: tokens/s (dense pipeline vs run.c-style reference)\n\n` +
      `\`deno run -A bench/model_bench.ts\` on ${date.slice(0, 10)}, Deno ${Deno.version.deno}, ` +
      `one thread. Baseline (marked 1.00×): ${BASELINE}, model/_reference.ts. ` +
      `Tokens are real TinyStories text; mitata \`measure\`, mean of ≥ 5 samples. ` +
      `Load average at the end of the run (1, 5, 15 min): ${load} on ${navigator.hardwareConcurrency} ` +
      `cores shared with other work, so compare rows within a group, measured back to back.\n\n` +
      table,
  );
  console.log(`wrote ${values.out}.md and ${values.out}.json`);
}
