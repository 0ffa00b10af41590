// Copyright 2026 the longctx authors. MIT license.

/**
 * What each context-extension pipeline costs on tinystories-1k: prefill and
 * decode tokens per second at long contexts, tokens each head reads per decode
 * step, and the bytes the KV store holds, beside dense attention measured in
 * the same run.
 *
 * ```sh
 * deno run -A bench/context_extension_bench.ts [--lengths 8192,32768] [--pipelines a,b] \
 *   [--dense-max 8192] [--decode 16] [--out bench/results/context_extension_bench]
 * ```
 *
 * Per (pipeline, length): a pass-key prompt of `length − decode` tokens (fact at
 * depth 0.5) is prefilled in chunks of 256 (one timed run: these are
 * seconds-long model calls, not micro-benchmarks), then `decode` tokens are
 * generated greedily, each timed. Tokens read per step are the pipeline's
 * `stats.tokensPerHead` over the decode steps, averaged over layers and query
 * heads; "dense reads" is the cache length at the same step. Pipelines whose
 * every head is dense-cost (RoPE scaling, DuoAttention with dense retrieval
 * heads) are run only up to `--dense-max`.
 *
 * Roofline: a decode step must at least read the selected K and V rows
 * (4 bytes × 2 × headDim per token and KV head read, per layer); at ~20 GB/s
 * that is far below the measured step time here, which the model's matmuls
 * and the TypeScript kernels dominate: the table gives the bytes so the
 * ratio to dense is the hardware-independent saving.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseCheckpoint } from "../model/checkpoint.ts";
import { Llama } from "../model/llama.ts";
import { Tokenizer } from "../model/tokenizer.ts";
import { splitStories } from "../model/perplexity.ts";
import { buildPasskeyPrompt, passkeyFiller, passkeyTrials } from "../model/passkey.ts";
import { passkeyHeadProfile, topRetrievalHeads } from "../model/duo_calibration.ts";
import {
  describeNamedPipeline,
  namedPipeline,
  PIPELINE_NAMES,
  type PipelineName,
} from "../model/pipelines.ts";
import { readChecked, sharedPath } from "../model/_files.ts";

const { values: v } = parseArgs({
  args: Deno.args,
  options: {
    lengths: { type: "string", default: "8192,32768" },
    pipelines: {
      type: "string",
      default: "dense,yarn,streaming,lm-infinite,longheads,longheads-kb,duo,duo-longheads-kb",
    },
    "dense-max": { type: "string", default: "8192" },
    decode: { type: "string", default: "16" },
    out: { type: "string" },
  },
});
const DENSE_COST = new Set(["dense", "pi", "ntk", "yarn", "dynamic-ntk", "duo"]);
const lengths = v.lengths!.split(",").map(Number);
const names = v.pipelines!.split(",").map((s) => {
  if (!(PIPELINE_NAMES as readonly string[]).includes(s)) throw new TypeError(`unknown ${s}`);
  return s as PipelineName;
});
const denseMax = Number(v["dense-max"]);
const decodeSteps = Number(v.decode);

const ckpt = parseCheckpoint(
  (await readChecked(sharedPath("models/tinystories-1k/tinystories1k.bin"))).bytes,
);
const c = ckpt.config, L0 = c.seqLen;
const tok = Tokenizer.parse(
  (await readChecked(sharedPath("models/stories260K/tok512.bin"))).bytes,
  { vocabSize: c.vocabSize },
);
const filler = passkeyFiller(
  tok,
  splitStories(
    new TextDecoder().decode(
      (await readChecked(sharedPath("models/tinystories-1k/heldout_stories.txt"))).bytes,
    ),
  ),
);
// DuoAttention split: the pass-key profile at the trained context, as `deno task model passkey`.
const profilePrompts = [0.05, 0.25, 0.5, 0.75, 0.95].flatMap((depth) =>
  passkeyTrials(2, 1_000_003, filler.length).map((t) =>
    buildPasskeyPrompt(tok, filler, { length: L0, depth, key: t.key, startStory: t.startStory })
  )
);
const duoRetrieval = topRetrievalHeads(
  passkeyHeadProfile(new Llama(ckpt), profilePrompts).kvHeads,
  c.layers,
  c.kvHeads,
  0.25,
);

interface Row {
  pipeline: string;
  description: string;
  length: number;
  prefillTokens: number;
  prefillSeconds: number;
  prefillTokensPerSecond: number;
  decodeMsPerToken: number;
  decodeTokensPerSecond: number;
  /** Mean tokens read per query head and layer per decode step. */
  tokensReadPerStep: number;
  /** Cache length during decode (what dense reads). */
  denseTokensPerStep: number;
  kvBytesHeld: number;
}
const rows: Row[] = [];
const [trial] = passkeyTrials(1, 0, filler.length);
for (const length of lengths) {
  const prompt = buildPasskeyPrompt(tok, filler, {
    length: length - decodeSteps + 6,
    depth: 0.5,
    key: trial!.key,
    startStory: trial!.startStory,
  });
  for (const name of names) {
    if (DENSE_COST.has(name) && length > denseMax) continue;
    const model = new Llama(ckpt, {
      pipeline: (cfg) => namedPipeline(name, cfg, { targetContext: length, duoRetrieval }),
    });
    const t0 = performance.now();
    let logits = model.forward(prompt.tokens);
    const prefillSeconds = (performance.now() - t0) / 1000;
    const pipe = model.pipeline;
    pipe.resetStats();
    let next = 0;
    const t1 = performance.now();
    for (let i = 0; i < decodeSteps; i++) {
      next = 0;
      for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[next]!) next = j;
      logits = model.forward([next]);
    }
    const decodeMs = (performance.now() - t1) / decodeSteps;
    let read = 0;
    for (const x of pipe.stats.tokensPerHead) read += x;
    // stats accumulate over layers: queries counts one per layer and token.
    const perStep = read / pipe.stats.tokensPerHead.length / pipe.stats.queries;
    const row: Row = {
      pipeline: name,
      description: describeNamedPipeline(name, c, { targetContext: length, duoRetrieval }),
      length,
      prefillTokens: prompt.tokens.length,
      prefillSeconds,
      prefillTokensPerSecond: prompt.tokens.length / prefillSeconds,
      decodeMsPerToken: decodeMs,
      decodeTokensPerSecond: 1000 / decodeMs,
      tokensReadPerStep: perStep,
      denseTokensPerStep: prompt.tokens.length + decodeSteps / 2,
      kvBytesHeld: pipe.bytesHeld(),
    };
    rows.push(row);
    console.error(
      `${name} @ ${length}: prefill ${row.prefillTokensPerSecond.toFixed(0)} tok/s, decode ${
        row.decodeTokensPerSecond.toFixed(1)
      } tok/s, reads ${row.tokensReadPerStep.toFixed(0)} tokens/step, KV ${
        (row.kvBytesHeld / 2 ** 20).toFixed(1)
      } MiB`,
    );
  }
}

const load = Deno.loadavg().map((x) => x.toFixed(2)).join(", ");
const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
let md = `# Context extension on tinystories-1k: speed, tokens read and KV memory by pipeline\n\n` +
  `\`deno run -A bench/context_extension_bench.ts --lengths ${lengths.join(",")} --pipelines ${
    names.join(",")
  } --dense-max ${denseMax} --decode ${decodeSteps}\` on ${
    new Date().toISOString().slice(0, 16)
  }Z, Deno ${Deno.version.deno}, one thread, pure-TypeScript kernels. Load average at the end ` +
  `(1, 5, 15 min): ${load} on 2 cores shared with other jobs, so absolute rates are pessimistic; ` +
  `rows of one length were measured back to back. Prefill: one timed run over a pass-key prompt ` +
  `(fact at depth 0.5) in chunks of 256. Decode: ${decodeSteps} greedy steps after it. "reads" = ` +
  `tokens per query head and layer per decode step (dense reads the whole cache); KV = bytes the ` +
  `store holds after decoding (f32 keys and values, all layers). Dense-cost pipelines (every head ` +
  `reads everything) stop at ${denseMax}.\n\n`;
for (const length of lengths) {
  const mine = rows.filter((r) => r.length === length);
  const dense = mine.find((r) => r.pipeline === "dense");
  md += `## ${length} tokens (${length / L0}× the trained context)\n\n` +
    `| pipeline | prefill tok/s | decode tok/s | reads / step | vs dense reads | KV held (MiB) |\n` +
    `| --- | ---: | ---: | ---: | ---: | ---: |\n`;
  for (const r of mine) {
    md += `| ${r.pipeline} | ${r.prefillTokensPerSecond.toFixed(0)}${
      dense && r !== dense
        ? ` (${(r.prefillTokensPerSecond / dense.prefillTokensPerSecond).toFixed(2)}×)`
        : ""
    } | ${r.decodeTokensPerSecond.toFixed(1)}${
      dense && r !== dense
        ? ` (${(r.decodeTokensPerSecond / dense.decodeTokensPerSecond).toFixed(2)}×)`
        : ""
    } | ${r.tokensReadPerStep.toFixed(0)} | ${
      (r.tokensReadPerStep / r.denseTokensPerStep).toFixed(3)
    } | ${mib(r.kvBytesHeld)} |\n`;
  }
  if (!dense) {
    md += `\nDense was not run at ${length} (every head reads the whole cache; its prefill is ` +
      `quadratic): it would read ${
        Math.round(mine[0]?.denseTokensPerStep ?? length)
      } tokens per step and hold ${
        mib(2 * 4 * c.layers * c.kvHeads * c.headDim * length)
      } MiB of KV.\n`;
  }
  md += "\n";
}
md += `| pipeline | configuration at the largest length |\n| --- | --- |\n` +
  [...new Set(rows.map((r) => r.pipeline))].map((n) =>
    `| ${n} | ${rows.filter((r) => r.pipeline === n).at(-1)!.description} |`
  ).join("\n") + "\n";
console.log(md);
if (v.out) {
  await Deno.writeTextFile(`${v.out}.md`, md);
  await Deno.writeTextFile(
    `${v.out}.json`,
    JSON.stringify({ date: new Date().toISOString(), load, rows }, null, 1) + "\n",
  );
}
