// Copyright 2026 the longctx authors. MIT license.

import assert from "node:assert/strict";
import { parseCheckpoint, randomCheckpoint } from "./checkpoint.ts";
import { denseLlamaPipeline, Llama } from "./llama.ts";
import { namedPipeline, PIPELINE_NAMES } from "./pipelines.ts";
import { generate } from "./generate.ts";
import { Sampler } from "./sampler.ts";
import { Tokenizer } from "./tokenizer.ts";
import { splitStories, tokenizeStories } from "./perplexity.ts";
import { ReferenceLlama } from "./_reference.ts";
import { loadSharedArtefact } from "./_files.ts";
import { AttentionPipeline } from "../attention/pipeline.ts";
import { StreamingLlm } from "../attention/streaming_llm.ts";
import { LongHeads } from "../attention/long_heads.ts";
import { SinkWindow } from "../kv/sink_window.ts";
import { Rope } from "../positional/rope.ts";
import { assertClose } from "../tests/_util.ts";

const GQA = { dim: 32, hiddenDim: 48, layers: 3, heads: 4, kvHeads: 2, vocabSize: 37, seqLen: 64 };

function prompt(n: number, vocab: number, seed = 1): number[] {
  return Array.from({ length: n }, (_, i) => (i * 13 + seed * 7 + ((i * i) % 5)) % vocab);
}

/** Logits of every token of `tokens` from the model, via onLogits, fed in one call. */
function allLogits(model: Llama, tokens: number[]): Float32Array {
  const V = model.config.vocabSize;
  const out = new Float32Array(tokens.length * V);
  model.reset();
  model.forward(tokens, {
    onLogits: (logits, rows, start) => out.set(logits.subarray(0, rows * V), start * V),
  });
  return out;
}

/** Logits of every token, one decode call per token. */
function decodeLogits(model: Llama, tokens: number[]): Float32Array {
  const V = model.config.vocabSize;
  const out = new Float32Array(tokens.length * V);
  model.reset();
  tokens.forEach((t, i) => out.set(model.forward([t]), i * V));
  return out;
}

function referenceLogits(ref: ReferenceLlama, tokens: number[]): Float32Array {
  const V = ref.ckpt.config.vocabSize;
  const out = new Float32Array(tokens.length * V);
  ref.reset();
  tokens.forEach((t, i) => out.set(ref.forward(t), i * V));
  return out;
}

Deno.test("Llama with the dense pipeline equals a direct naive-attention forward (GQA, awkward lengths)", () => {
  for (const sharedClassifier of [true, false]) {
    const ckpt = randomCheckpoint({ ...GQA, sharedClassifier }, { seed: 11 });
    const model = new Llama(ckpt, { prefillChunk: 8 });
    const ref = new ReferenceLlama(ckpt, 64);
    for (const n of [1, 3, 19]) {
      const tokens = prompt(n, GQA.vocabSize, n);
      assertClose(allLogits(model, tokens), referenceLogits(ref, tokens), {
        atol: 1e-4,
        rtol: 1e-4,
        label: `n=${n} shared=${sharedClassifier}`,
      });
    }
  }
});

Deno.test("Llama: chunked prefill equals token-by-token decode for any chunk size", () => {
  const ckpt = randomCheckpoint(GQA, { seed: 2 });
  const tokens = prompt(45, GQA.vocabSize);
  const want = decodeLogits(new Llama(ckpt), tokens);
  for (const chunk of [1, 7, 16, 45, 256]) {
    const got = allLogits(new Llama(ckpt, { prefillChunk: chunk }), tokens);
    assertClose(got, want, { atol: 1e-5, rtol: 1e-5, label: `chunk ${chunk}` });
  }
  // The returned logits are the last token's, for prefill and for decode alike.
  const model = new Llama(ckpt, { prefillChunk: 16 });
  const last = model.forward(tokens);
  assertClose(last, want.subarray(44 * GQA.vocabSize), { atol: 1e-5, rtol: 1e-5 });
  assert.equal(model.position, 45);
});

Deno.test("Llama: a StreamingLLM pipeline gives the same logits chunked or token by token past its window", () => {
  const ckpt = randomCheckpoint(GQA, { seed: 4 });
  const factory = (c: typeof ckpt.config): AttentionPipeline =>
    new AttentionPipeline({
      layers: c.layers,
      heads: c.heads,
      kvHeads: c.kvHeads,
      headDim: c.headDim,
      rope: new Rope({ headDim: c.headDim, layout: "adjacent" }),
      selector: new StreamingLlm({ sinks: 2, window: 9 }),
      policy: new SinkWindow({ sinks: 2, window: 9, slack: 3 }),
    });
  const tokens = prompt(40, GQA.vocabSize, 3);
  const chunked = allLogits(new Llama(ckpt, { pipeline: factory, prefillChunk: 13 }), tokens);
  const stepped = decodeLogits(new Llama(ckpt, { pipeline: factory }), tokens);
  assertClose(chunked, stepped, { atol: 1e-5, rtol: 1e-5 });
  // …and differs from dense once the context exceeds sinks + window.
  const dense = allLogits(new Llama(ckpt), tokens);
  const V = GQA.vocabSize;
  assertClose(chunked.subarray(0, 11 * V), dense.subarray(0, 11 * V), { atol: 1e-5, rtol: 1e-5 });
  let diff = 0;
  for (let i = 30 * V; i < 40 * V; i++) diff = Math.max(diff, Math.abs(chunked[i]! - dense[i]!));
  assert.ok(diff > 1e-3, `streaming equals dense past the window (max |Δ| ${diff})`);
});

Deno.test("Llama: every named pipeline but DuoAttention equals dense within the trained length", () => {
  const shape = { ...GQA, seqLen: 256 };
  const ckpt = randomCheckpoint(shape, { seed: 6 });
  const tokens = prompt(150, shape.vocabSize, 5);
  const dense = allLogits(new Llama(ckpt, { prefillChunk: 64 }), tokens);
  // DuoAttention's streaming heads keep their window at any length (tested in pipelines_test.ts).
  for (const name of PIPELINE_NAMES.filter((n) => !n.startsWith("duo"))) {
    const model = new Llama(ckpt, {
      pipeline: (c) => namedPipeline(name, c, { targetContext: 256 }),
      prefillChunk: 64,
    });
    assertClose(allLogits(model, tokens), dense, { atol: 1e-4, rtol: 1e-4, label: name });
  }
});

Deno.test("Llama.reset() also resets stateful selectors: a LongHeads run repeats exactly", () => {
  const ckpt = randomCheckpoint(GQA, { seed: 8 });
  const longHeads = (): AttentionPipeline =>
    new AttentionPipeline({
      layers: GQA.layers,
      heads: GQA.heads,
      kvHeads: GQA.kvHeads,
      headDim: 8,
      rope: new Rope({ headDim: 8, layout: "adjacent" }),
      selector: new LongHeads({ chunkSize: 4, attentionLength: 16 }),
    });
  const fresh = allLogits(new Llama(ckpt, { pipeline: longHeads() }), prompt(60, GQA.vocabSize, 1));
  // A different sequence first: its chunk summaries must not leak into the next one.
  // (AttentionPipeline.reset() alone keeps LongHeads' summaries; Llama.reset() clears them.)
  const model = new Llama(ckpt, { pipeline: longHeads(), prefillChunk: 8 });
  allLogits(model, prompt(60, GQA.vocabSize, 2));
  assert.deepEqual(allLogits(model, prompt(60, GQA.vocabSize, 1)), fresh);
  // LongHeads prefill equals its decode (the selector's one rule for both).
  assertClose(decodeLogits(model, prompt(60, GQA.vocabSize, 1)), fresh, { atol: 1e-5, rtol: 1e-5 });
});

Deno.test("Llama rejects mismatched pipelines, bad chunk sizes and bad tokens", () => {
  const ckpt = randomCheckpoint(GQA);
  const wrong = new AttentionPipeline({ layers: 3, heads: 4, kvHeads: 4, headDim: 8 });
  assert.throws(
    () => new Llama(ckpt, { pipeline: wrong }),
    /\(layers, heads, kvHeads, headDim\) must be \(3, 4, 2, 8\), got \(3, 4, 4, 8\)/,
  );
  const noRope = new AttentionPipeline({ layers: 3, heads: 4, kvHeads: 2, headDim: 8 });
  assert.throws(() => new Llama(ckpt, { pipeline: noRope }), /got no rope/);
  const halves = new AttentionPipeline({
    layers: 3,
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    rope: new Rope({ headDim: 8 }),
  });
  assert.throws(
    () => new Llama(ckpt, { pipeline: halves }),
    /layout "adjacent".*got layout "halves"/,
  );
  assert.throws(
    () => new Llama(ckpt, { pipeline: {} as AttentionPipeline }),
    /must be an AttentionPipeline/,
  );
  assert.throws(() => new Llama(ckpt, { prefillChunk: 0 }), RangeError);
  const model = new Llama(ckpt);
  assert.throws(() => model.forward([]), /at least one token/);
  assert.throws(
    () => model.forward([1, 37]),
    /tokens\[1\] must be an integer in \[0, 37\), got 37/,
  );
  assert.throws(() => model.forward([0.5]), RangeError);
  assert.equal(model.position, 0); // nothing was fed
  assert.equal(denseLlamaPipeline(ckpt.config).rope?.layout, "adjacent");
});

// ---------------------------------------------------------------------------
// stories260K (sha256-checked; skipped when ../shared is absent).

const modelFile = await loadSharedArtefact("models/stories260K/stories260K.bin");
const tokFile = await loadSharedArtefact("models/stories260K/tok512.bin");
const textFile = await loadSharedArtefact("data/tinystories/tinystories_validation_first1000.txt");
const noModel = modelFile.reason ?? tokFile.reason;
if (noModel) console.log(`skipping stories260K model tests: ${noModel}`);
if (textFile.reason) console.log(`skipping real-text model tests: ${textFile.reason}`);

/**
 * `./run stories260K.bin -z tok512.bin -t 0.0` (256 steps from BOS) as published in the
 * stories260K readme of karpathy/tinyllamas (quoted in llama2.c's doc/stories260K.md); its
 * first sentences are also quoted in ../shared/models/stories260K/PROVENANCE.md.
 */
const PUBLISHED_GREEDY = [
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.",
  `Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do. She said, "I want to play with your ball, but I can't find it."`,
  `Lily was sad and didn't know what to do. She said, "I'm sorry, Lily. I didn't know what to do."`,
  `Lily didn't want to help her mom, so she said, "I'm sorry, mom. I didn't know what to do." Her mom said, "Don't worry, Lily. We can help you.`,
].join("\n");

/** `./run stories260K.bin -z tok512.bin -t 0 -i "Zoo" -n 60`, as quoted by a C64 port's readme. */
const PUBLISHED_ZOO =
  "Zoo was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but she didn't want to play with";

Deno.test({
  name: "stories260K: greedy generation from BOS reproduces the published sample exactly",
  ignore: noModel !== undefined,
  fn() {
    const ckpt = parseCheckpoint(modelFile.bytes!);
    const tok = Tokenizer.parse(tokFile.bytes!, { vocabSize: 512 });
    const model = new Llama(ckpt);
    const r = generate(model, tok, new Sampler(512, { temperature: 0 }), { steps: 256 });
    assert.ok(r.text.startsWith(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.",
    ));
    assert.equal(r.text, PUBLISHED_GREEDY);
    assert.equal(r.tokens.length, 257); // BOS + one token per step
    const zoo = generate(model, tok, new Sampler(512, { temperature: 0 }), {
      prompt: "Zoo",
      steps: 60,
    });
    assert.equal(zoo.text, PUBLISHED_ZOO);
  },
});

Deno.test({
  name:
    "stories260K: dense pipeline equals the naive forward, chunked prefill equals decode, on real text",
  ignore: noModel !== undefined || textFile.bytes === undefined,
  fn() {
    const ckpt = parseCheckpoint(modelFile.bytes!);
    const tok = Tokenizer.parse(tokFile.bytes!, { vocabSize: 512 });
    const stories = splitStories(new TextDecoder().decode(textFile.bytes!));
    const tokens = Array.from(tokenizeStories(tok, stories.slice(3), 300));
    const model = new Llama(ckpt, { prefillChunk: 64 });
    const ref = new ReferenceLlama(ckpt, 64);
    assertClose(
      allLogits(model, tokens.slice(0, 64)),
      referenceLogits(ref, tokens.slice(0, 64)),
      { atol: 1e-4, rtol: 1e-4, label: "vs reference" },
    );
    assertClose(allLogits(model, tokens), decodeLogits(new Llama(ckpt), tokens), {
      atol: 1e-4,
      rtol: 1e-4,
      label: "chunked vs decode",
    });
  },
});
