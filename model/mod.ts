// Copyright 2026 the longctx authors. MIT license.
// This module is browser compatible.

/**
 * A real model inside the library: llama2.c checkpoints and tokenizers, and a
 * Llama forward pass whose attention in every layer is a longctx
 * `AttentionPipeline` — dense by default, or any composition of positional
 * scaling, selectors, routers and cache policies — with chunked prefill,
 * decode from the pipeline's KV cache, `run.c`-compatible sampling,
 * perplexity over real text, and capture of real Q/K/V as `.npy`.
 *
 * | module | what |
 * | --- | --- |
 * | {@linkcode parseCheckpoint}, {@linkcode loadCheckpoint} | llama2.c `.bin` (legacy and version 1), header/size/sha256 validation |
 * | {@linkcode Tokenizer} | `tokenizer.bin`: `run.c`'s encode (byte fallback, greedy merges) and decode |
 * | {@linkcode Llama} | RMSNorm, RoPE, GQA attention through a pipeline, SwiGLU |
 * | {@linkcode namedPipeline} | dense, PI, NTK, YaRN, dynamic NTK, StreamingLLM, LM-Infinite, LongHeads sized for a target context |
 * | {@linkcode generate}, {@linkcode Sampler} | `run.c`'s generation loop and sampler |
 * | {@linkcode perplexity}, {@linkcode tokenizeStories} | windowed perplexity over real stories |
 * | {@linkcode captureAttention}, {@linkcode encodeNpy} | per-layer Q/K/V and attention statistics as NumPy arrays |
 * | {@linkcode calibrateDuoHeads} | a training-free DuoAttention head split for models without published gates |
 *
 * The command line (`deno run -A model/cli.ts generate|perplexity|capture|sweep|info`)
 * runs these on the stories260K model.
 *
 * @example A random model: StreamingLLM attention gives the dense logits while the context fits its window
 * ```ts
 * import { Llama, namedPipeline, randomCheckpoint } from "@longctx/longctx/model";
 * import assert from "node:assert/strict";
 * const ckpt = randomCheckpoint({ dim: 16, hiddenDim: 32, layers: 2, heads: 4, kvHeads: 2, vocabSize: 20, seqLen: 32 });
 * const dense = new Llama(ckpt);
 * const streaming = new Llama(ckpt, { pipeline: (c) => namedPipeline("streaming", c, { targetContext: 128 }) });
 * const prompt = Array.from({ length: 30 }, (_, i) => (i * 7) % 20);
 * const a = Float32Array.from(dense.forward(prompt));
 * const b = streaming.forward(prompt);
 * assert.ok(a.every((x, i) => Math.abs(x - b[i]) < 1e-4));
 * ```
 *
 * @module
 */

export * from "./checkpoint.ts";
export * from "./tokenizer.ts";
export * from "./sampler.ts";
export * from "./llama.ts";
export * from "./pipelines.ts";
export * from "./generate.ts";
export * from "./perplexity.ts";
export * from "./capture.ts";
export * from "./duo_calibration.ts";
export * from "./passkey.ts";
export * from "./npy.ts";
